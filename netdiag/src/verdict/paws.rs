//! PAWS (RFC 7323): segments dropped because their TCP timestamp is older than one already seen
//! from the same peer, or because they echo a timestamp this host never sent.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use netdiag_common::{PeerKey, PeerStats};

use super::Finding;
use crate::{aggregate::Aggregator, clock::Clock, events::ip_from, hooks::ReasonTable};

const TCP_SYN_SENT: u8 = 2;
const TCP_SYN_RECV: u8 = 3;
const TCP_TIME_WAIT: u8 = 6;
const TCP_LISTEN: u8 = 10;
const TCP_NEW_SYN_RECV: u8 = 12;

/// Where in the connection's life the PAWS check rejected the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    Established,
    SynRecv,
    TimeWait,
    SynSent,
    Tsecr,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Established => "established",
            Variant::SynRecv => "syn_recv",
            Variant::TimeWait => "time_wait",
            Variant::SynSent => "syn_sent",
            Variant::Tsecr => "tsecr",
        }
    }

    /// The variant of a drop, from the kernel's reason and the state of the socket that dropped it.
    pub fn of(reason: &str, sk_state: u8) -> Option<Variant> {
        match reason {
            "TCP_RFC7323_TW_PAWS" => Some(Variant::TimeWait),
            "TCP_RFC7323_TSECR" => Some(Variant::Tsecr),
            "TCP_RFC7323_PAWS_ACK" => Some(Variant::Established),
            "TCP_RFC7323_PAWS" => Some(match sk_state {
                TCP_LISTEN | TCP_NEW_SYN_RECV | TCP_SYN_RECV => Variant::SynRecv,
                TCP_SYN_SENT => Variant::SynSent,
                TCP_TIME_WAIT => Variant::TimeWait,
                _ => Variant::Established,
            }),
            _ => None,
        }
    }
}

/// The `nstat` counter the kernel raises for a drop of this reason and variant.
pub fn counter_for(reason: &str, variant: Variant) -> &'static str {
    match (reason, variant) {
        ("TCP_RFC7323_PAWS_ACK", _) => "TcpExtPAWSOldAck",
        (_, Variant::TimeWait) => "TcpExtPAWSTimewait",
        (_, Variant::Tsecr) => "TcpExtTSEcrRejected",
        (_, Variant::SynSent) => "TcpExtPAWSActive",
        _ => "TcpExtPAWSEstab",
    }
}

/// The counter `counter_for` names, as the running kernel has it: before 6.16 there is no
/// `TcpExtPAWSTimewait` and a rejection in TIME_WAIT raises `TcpExtPAWSEstab` (tcp_minisocks.c:
/// `__NET_INC_STATS(twsk_net(tw), LINUX_MIB_PAWSESTABREJECTED)`). `kernel_has` tells whether
/// the kernel's counters include a name.
pub fn counter_on_this_kernel(counter: &'static str, kernel_has: impl Fn(&str) -> bool) -> &'static str {
    if counter == "TcpExtPAWSTimewait" && !kernel_has(counter) { "TcpExtPAWSEstab" } else { counter }
}

/// Every counter the PAWS checks raise.
pub const PAWS_COUNTERS: &[&str] = &[
    "TcpExtPAWSEstab",
    "TcpExtPAWSOldAck",
    "TcpExtPAWSTimewait",
    "TcpExtPAWSActive",
    "TcpExtTSEcrRejected",
];

/// Settings of the running kernel that change the advice.
#[derive(Clone, Debug, Default)]
pub struct KernelFacts {
    pub release: String,
    pub tcp_timestamps: Option<u8>,
    pub tcp_invalid_ratelimit_ms: Option<u32>,
}

pub struct Input<'a> {
    pub kernel_counts: &'a [(PeerKey, PeerStats)],
    pub reasons: &'a ReasonTable,
    pub samples: &'a Aggregator,
    pub clock: &'a Clock,
    pub duration_s: f64,
    pub netns_names: &'a HashMap<u32, String>,
    pub facts: &'a KernelFacts,
}

#[derive(Default)]
struct Group {
    count: u64,
    first_ns: u64,
    last_ns: u64,
    locals: BTreeSet<String>,
    /// Drops by kernel reason name.
    reasons: BTreeMap<String, u64>,
}

/// One `paws_rejections` finding per peer, namespace and variant, with the kernel's exact count.
pub fn findings(input: &Input) -> Vec<Finding> {
    let mut groups: BTreeMap<(std::net::IpAddr, u32, Variant), Group> = BTreeMap::new();
    for (key, stats) in input.kernel_counts {
        let reason = input.reasons.name(key.reason as u32);
        let (Some(variant), Some(peer)) = (Variant::of(&reason, key.sk_state), ip_from(key.family, &key.addr))
        else {
            continue;
        };
        let group = groups.entry((peer, key.netns, variant)).or_default();
        group.count += stats.count;
        *group.reasons.entry(reason.clone()).or_default() += stats.count;
        group.first_ns = if group.first_ns == 0 { stats.first_ns } else { group.first_ns.min(stats.first_ns) };
        group.last_ns = group.last_ns.max(stats.last_ns);
        let id = crate::aggregate::PeerId { addr: peer, netns: key.netns };
        if let Some(locals) = input.samples.peers.get(&id).and_then(|s| s.locals.get(&(key.reason as u32))) {
            group.locals.extend(locals.iter().map(|a| a.to_string()));
        }
    }
    groups
        .into_iter()
        .filter(|(_, g)| g.count > 0)
        .map(|((peer, netns, variant), g)| {
            let netns_name = input.netns_names.get(&netns).cloned().unwrap_or_else(|| format!("inode:{netns}"));
            let local: Vec<String> = g.locals.into_iter().collect();
            let rate = if input.duration_s > 0.0 { g.count as f64 / input.duration_s } else { 0.0 };
            let words = Words { peer: peer.to_string(), netns: &netns_name, local: &local, count: g.count, rate };
            Finding {
                kind: "paws_rejections",
                variant: variant.name(),
                peer: peer.to_string(),
                netns: netns_name.clone(),
                summary: words.summary(variant),
                advice: words.advice(variant, input.facts),
                local,
                count: g.count,
                rate_per_s: (rate * 1000.0).round() / 1000.0,
                first_seen: input.clock.rfc3339(g.first_ns),
                last_seen: input.clock.rfc3339(g.last_ns),
                evidence: Some(
                    g.reasons
                        .iter()
                        .map(|(reason, n)| {
                            format!("{n} segments from {peer} dropped with kernel drop reason {reason} (counted per peer in a kernel map)")
                        })
                        .collect(),
                ),
                disproved_by: Some(format!(
                    "the namespace's PAWS counters ({}) not rising with these drops, or the dropped segments \
                     (--pcap) carrying TSvals no older than the connection's",
                    PAWS_COUNTERS.join(", ")
                )),
                ..Finding::default()
            }
        })
        .collect()
}

struct Words<'a> {
    peer: String,
    netns: &'a str,
    local: &'a [String],
    count: u64,
    rate: f64,
}

impl Words<'_> {
    fn target(&self) -> String {
        let ns = if self.netns == "root" { String::new() } else { format!(" in namespace {}", self.netns) };
        match self.local {
            [] => format!("this host{ns}"),
            [one] => format!("{one}{ns}"),
            many => format!("{} and {} other local endpoint(s){ns}", many[0], many.len() - 1),
        }
    }

    fn summary(&self, variant: Variant) -> String {
        let (peer, n, to, rate) = (&self.peer, self.count, self.target(), self.rate);
        match variant {
            Variant::TimeWait => format!(
                "{peer} tried to open connections to {to} and {n} of its segments ({rate:.2}/s) were dropped \
                 by the PAWS check of a TIME_WAIT socket: they carried TCP timestamps older than the last \
                 connection from the same address and port. The kernel answered no SYN-ACK, so to {peer} \
                 the server looks dead. Several hosts with different timestamp clocks behind one NAT address \
                 do exactly this."
            ),
            Variant::Established => format!(
                "{peer} sent {n} segments ({rate:.2}/s) on established connections to {to} whose TCP \
                 timestamps were older than ones it had already sent (RFC 7323 PAWS). The kernel dropped \
                 them and answered with duplicate ACKs, rate-limited by tcp_invalid_ratelimit."
            ),
            Variant::SynRecv => format!(
                "{peer} sent {n} handshake segments ({rate:.2}/s) to {to} whose TCP timestamps were older \
                 than its SYN's; the kernel dropped them before the connection was accepted."
            ),
            Variant::SynSent => format!(
                "Connection attempts from {to} to {peer} were answered {n} times ({rate:.2}/s) with \
                 SYN-ACKs failing the PAWS check; the connections did not open."
            ),
            Variant::Tsecr => format!(
                "{peer} sent {n} segments ({rate:.2}/s) to {to} completing handshakes with a timestamp echo \
                 (TSecr) this host never sent; the kernel dropped them and the connections never opened."
            ),
        }
    }

    fn advice(&self, variant: Variant, facts: &KernelFacts) -> String {
        let peer = &self.peer;
        let timestamps = match facts.tcp_timestamps {
            Some(0) => " Timestamps are already off here (net.ipv4.tcp_timestamps=0).".to_string(),
            Some(1) => " This host uses net.ipv4.tcp_timestamps=1 (timestamps with a random offset per \
                        connection, Linux 4.10 and later)."
                .to_string(),
            Some(2) => " This host uses net.ipv4.tcp_timestamps=2 (timestamps without random offset)."
                .to_string(),
            _ => String::new(),
        };
        match variant {
            Variant::TimeWait => format!(
                "Find out whether {peer} is a NAT gateway or load balancer: if so, the hosts behind it each have \
                 their own timestamp clock, and a reconnect that reuses a port of a connection still in \
                 TIME_WAIT here is judged against another host's clock. Linux clients since 4.10 add a random \
                 offset per connection (tcp_timestamps=1), which makes clocks unrelated rather than ordered; \
                 stacks with one clock per host, or tcp_timestamps=2, collide. Avoid the server closing \
                 first (let clients close, or use keep-alive) so it does not hold TIME_WAIT for them. \
                 net.ipv4.tcp_tw_recycle, the setting behind the classic case, was removed in Linux 4.12; on an \
                 older kernel set it to 0. Turning timestamps off on the server (net.ipv4.tcp_timestamps=0) \
                 stops these drops but loses RTT measurement and protection against wrapped sequence numbers; \
                 keep it as a last resort.{timestamps}"
            ),
            Variant::Established | Variant::SynRecv => {
                let ratelimit = match facts.tcp_invalid_ratelimit_ms {
                    Some(0) => " Warning: net.ipv4.tcp_invalid_ratelimit is 0 here, so every rejected segment \
                                gets a duplicate ACK: an ACK loop can run at line rate. Set it back to 500."
                        .to_string(),
                    Some(ms) => format!(" The duplicate-ACK limiter is on (tcp_invalid_ratelimit={ms} ms)."),
                    None => String::new(),
                };
                format!(
                    "Something between {peer} and this host rewrites or replays TCP timestamps, or several hosts \
                     share one address and port (NAT, load-balancer failover), or the peer's timestamp clock \
                     jumped back. Capture on both ends (`tcpdump -n 'host {peer} and tcp'`) and compare TSval to \
                     find who changes it. If it turns into an ACK storm, check the limiter; disabling timestamps \
                     (net.ipv4.tcp_timestamps=0) stops PAWS drops at the cost of RTT measurement and \
                     wrapped-sequence protection.{ratelimit}{timestamps}"
                )
            }
            Variant::SynSent => format!(
                "{peer} or a device in front of it answers with timestamps that do not match this host's SYNs \
                 (a SYN proxy, NAT or load balancer that rewrites timestamps). Capture the handshake and check \
                 the SYN-ACK's TSecr against our SYN's TSval.{timestamps}"
            ),
            Variant::Tsecr => format!(
                "A device between {peer} and this host rewrites TCP timestamps (some NATs, SYN proxies and load \
                 balancers do), or someone completes handshakes blindly with forged packets. Compare the \
                 SYN-ACK's TSval with the ACK's TSecr in a capture on both sides.{timestamps}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use netdiag_common::FAMILY_IPV4;

    use super::*;

    #[test]
    fn variant_follows_reason_and_socket_state() {
        assert_eq!(Variant::of("TCP_RFC7323_TW_PAWS", 0), Some(Variant::TimeWait));
        assert_eq!(Variant::of("TCP_RFC7323_PAWS", 1), Some(Variant::Established));
        assert_eq!(Variant::of("TCP_RFC7323_PAWS", TCP_LISTEN), Some(Variant::SynRecv));
        assert_eq!(Variant::of("TCP_RFC7323_PAWS", TCP_SYN_SENT), Some(Variant::SynSent));
        assert_eq!(Variant::of("TCP_RFC7323_TSECR", 10), Some(Variant::Tsecr));
        assert_eq!(Variant::of("TCP_OLD_SEQUENCE", 1), None);
        assert_eq!(counter_for("TCP_RFC7323_TW_PAWS", Variant::TimeWait), "TcpExtPAWSTimewait");
        assert_eq!(counter_for("TCP_RFC7323_PAWS_ACK", Variant::Established), "TcpExtPAWSOldAck");
        assert_eq!(counter_for("TCP_RFC7323_PAWS", Variant::SynRecv), "TcpExtPAWSEstab");
    }

    #[test]
    fn time_wait_rejections_raise_paws_estab_where_paws_timewait_does_not_exist() {
        assert_eq!(counter_on_this_kernel("TcpExtPAWSTimewait", |_| true), "TcpExtPAWSTimewait");
        assert_eq!(counter_on_this_kernel("TcpExtPAWSTimewait", |_| false), "TcpExtPAWSEstab");
        assert_eq!(counter_on_this_kernel("TcpExtTSEcrRejected", |_| false), "TcpExtTSEcrRejected");
    }

    fn key(last_octet: u8, reason: u16, sk_state: u8) -> PeerKey {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[198, 51, 100, last_octet]);
        PeerKey { addr, netns: 42, reason, family: FAMILY_IPV4, sk_state, local_port: 8080, _pad: [0; 2] }
    }

    #[test]
    fn one_finding_per_peer_and_variant_with_kernel_counts() {
        let reasons = ReasonTable::from_symbols(&[
            (36, "TCP_RFC7323_PAWS".into()),
            (38, "TCP_RFC7323_TW_PAWS".into()),
        ]);
        let counts = [
            (key(7, 38, 6), PeerStats { count: 4, first_ns: 2_000_000_000, last_ns: 5_000_000_000, ..Default::default() }),
            (key(7, 38, 0), PeerStats { count: 2, first_ns: 1_000_000_000, last_ns: 3_000_000_000, ..Default::default() }),
            (key(9, 36, 1), PeerStats { count: 1, first_ns: 1, last_ns: 1, ..Default::default() }),
        ];
        let names = HashMap::from([(42, "srv".to_string())]);
        let input = Input {
            kernel_counts: &counts,
            reasons: &reasons,
            samples: &Aggregator::default(),
            clock: &Clock::now(),
            duration_s: 20.0,
            netns_names: &names,
            facts: &KernelFacts { tcp_timestamps: Some(1), ..Default::default() },
        };
        let found = findings(&input);
        assert_eq!(found.len(), 2);
        let tw = found.iter().find(|f| f.variant == "time_wait").unwrap();
        assert_eq!((tw.peer.as_str(), tw.netns.as_str(), tw.count), ("198.51.100.7", "srv", 6));
        assert_eq!(tw.rate_per_s, 0.3);
        assert!(tw.summary.contains("198.51.100.7") && tw.summary.contains("NAT"));
        assert!(tw.advice.contains("tcp_tw_recycle") && tw.advice.contains("tcp_timestamps=1"));
        let est = found.iter().find(|f| f.variant == "established").unwrap();
        assert_eq!((est.peer.as_str(), est.count), ("198.51.100.9", 1));
    }
}
