//! `--pcap` evidence: the headers of dropped segments, copied as they are in the packet into the
//! `CAPTURES` ring buffer. Off unless userspace sets a rate; rate-limited per CPU when on.
use aya_ebpf::{helpers::bpf_probe_read_kernel_buf, macros::map, maps::{PerCpuArray, RingBuf}};
use netdiag_common::{CAPTURE_BYTES, PacketCapture, stat};

use crate::{
    kmem::configured,
    layout::settings,
    maps::{bump, wakeup_flags},
    packet::Segment,
};

const NS_PER_SECOND: u64 = 1_000_000_000;

/// Evidence for userspace; its own ring, so captures never make drop samples lost.
#[map]
pub static CAPTURES: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

/// Per CPU: start of the current one-second window and captures taken in it.
#[map]
static CAPTURE_WINDOW: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Copies the headers of `seg`, if capturing is on and within its rate.
#[inline(always)]
pub fn headers(seg: &Segment, netns: u32, reason: u32, now: u64) {
    let limit = configured(&settings().captures_per_s);
    if limit == 0 {
        return;
    }
    if !within_rate(limit, now) {
        bump(stat::CAPTURE_SKIPPED);
        return;
    }
    let Some(mut entry) = CAPTURES.reserve::<PacketCapture>(0) else {
        bump(stat::CAPTURE_SKIPPED);
        return;
    };
    let capture = entry.as_mut_ptr();
    let len = if (seg.headers_len as usize) < CAPTURE_BYTES { seg.headers_len as usize } else { CAPTURE_BYTES };
    // SAFETY: `capture` points at the reserved ring-buffer record, ours until submitted.
    let copied = unsafe {
        (*capture).ts_ns = now;
        (*capture).netns = netns;
        (*capture).reason = reason;
        (*capture).captured_len = len as u16;
        (*capture).wire_len = seg.wire_len;
        (*capture).transport_offset = seg.transport_offset;
        (*capture)._pad = [0; 2];
        len > 0 && bpf_probe_read_kernel_buf(seg.ip, &mut (&mut (*capture).headers)[..len]).is_ok()
    };
    if copied {
        entry.submit(wakeup_flags(&CAPTURES));
    } else {
        entry.discard(0);
        bump(stat::CAPTURE_SKIPPED);
    }
}

#[inline(always)]
fn within_rate(limit: u32, now: u64) -> bool {
    let Some(window) = CAPTURE_WINDOW.get_ptr_mut(0) else { return false };
    // SAFETY: this CPU's slot; nothing else writes it while the program runs.
    let window = unsafe { &mut *window };
    if now.wrapping_sub(window[0]) >= NS_PER_SECOND {
        window[0] = now;
        window[1] = 0;
    }
    if window[1] >= limit as u64 {
        return false;
    }
    window[1] += 1;
    true
}
