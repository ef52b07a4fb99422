//! Socket tracepoints of the SYN funnel (slow path, per connection): SYN-ACK retransmissions
//! (`tcp:tcp_retransmit_synack`) and completed passive handshakes (`sock:inet_sock_set_state`
//! SYN_RECV → ESTABLISHED). They read the records' own address fields.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use netdiag_common::{FAMILY_IPV4, FAMILY_IPV6, funnel_stage, stat};

use crate::{
    handlers::syn_funnel,
    kmem::{configured, read},
    layout::layout,
    maps::bump,
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_RECV: i32 = 3;

#[tracepoint]
pub fn on_synack_retransmit(ctx: TracePointContext) -> u32 {
    let l = layout();
    let _ = at_socket(&ctx, &l.rec_rs_sk, &l.rec_rs_sport, [&l.rec_rs_family, &l.rec_rs_daddr, &l.rec_rs_daddr_v6], funnel_stage::SYNACK_RETRANSMIT);
    0
}

#[tracepoint]
pub fn on_state_change(ctx: TracePointContext) -> u32 {
    let l = layout();
    let field = |offset: &u32| unsafe { ctx.read_at::<i32>(configured(offset) as usize).ok() };
    let protocol: Option<u16> = unsafe { ctx.read_at(configured(&l.rec_ss_protocol) as usize).ok() };
    if field(&l.rec_ss_oldstate) == Some(TCP_SYN_RECV)
        && field(&l.rec_ss_newstate) == Some(TCP_ESTABLISHED)
        && protocol == Some(IPPROTO_TCP)
    {
        let _ = at_socket(&ctx, &l.rec_ss_sk, &l.rec_ss_sport, [&l.rec_ss_family, &l.rec_ss_daddr, &l.rec_ss_daddr_v6], funnel_stage::HANDSHAKE_DONE);
    }
    0
}

/// One funnel stage from a record's socket, local port and peer fields.
#[inline(always)]
fn at_socket(ctx: &TracePointContext, sk: &u32, sport: &u32, peer: [&u32; 3], stage: u8) -> Option<()> {
    let (Some((family, addr)), Ok(port), Ok(sk)) = (
        unsafe { record_peer(ctx, configured(peer[0]), configured(peer[1]), configured(peer[2])) },
        unsafe { ctx.read_at::<u16>(configured(sport) as usize) },
        unsafe { ctx.read_at::<*const u8>(configured(sk) as usize) },
    ) else {
        bump(stat::HANDSHAKE_UNPARSED);
        return None;
    };
    let l = layout();
    let net: *const u8 = if sk.is_null() { core::ptr::null() } else { unsafe { read(sk, configured(&l.sk_net)).unwrap_or(core::ptr::null()) } };
    let netns = if net.is_null() { 0 } else { unsafe { read(net, configured(&l.net_ns_inum)).unwrap_or(0) } };
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() };
    syn_funnel::at_socket(addr, family, port, netns, stage, now);
    Some(())
}

/// The remote address of a TCP tracepoint record (`family`, `daddr`, `daddr_v6` fields).
/// IPv4-mapped IPv6 peers are folded to IPv4, as the packet parser sees them.
#[inline(always)]
unsafe fn record_peer(ctx: &TracePointContext, family_off: u32, v4_off: u32, v6_off: u32) -> Option<(u8, [u8; 16])> {
    let mut addr = [0u8; 16];
    match unsafe { ctx.read_at::<u16>(family_off as usize).ok()? } {
        AF_INET => {
            let v4: [u8; 4] = unsafe { ctx.read_at(v4_off as usize).ok()? };
            addr[..4].copy_from_slice(&v4);
            Some((FAMILY_IPV4, addr))
        }
        AF_INET6 => {
            let v6: [u8; 16] = unsafe { ctx.read_at(v6_off as usize).ok()? };
            if v6[..10] == [0; 10] && v6[10] == 0xff && v6[11] == 0xff {
                addr[..4].copy_from_slice(&v6[12..]);
                return Some((FAMILY_IPV4, addr));
            }
            Some((FAMILY_IPV6, v6))
        }
        _ => None,
    }
}
