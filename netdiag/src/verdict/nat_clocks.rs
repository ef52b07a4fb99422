//! Timestamp clocks behind one address. Every SYN carries its sender's TSval, a clock that
//! ticks at a fixed rate (1000 Hz on Linux since 4.13) from a per-host or per-connection
//! offset. Points (arrival time, TSval) of one clock lie on one line; SYNs that cannot lie on
//! one line (other offsets, going backwards, another rate) come from several clocks — and
//! several clocks on the same source port, or several clocks each shared by many ports, are
//! several hosts: a NAT.
//!
//! A SYN proves a clock only if its TSval is new. A replayed SYN (a middlebox or an attacker
//! resending a captured one) carries a TSval its clock already sent, and would otherwise read
//! as a clock going backwards; SYNs the kernel dropped for what they are (on a connection it
//! holds open, with a bad checksum) carry TSvals nothing vouches for. Those are left out, and
//! the evidence says how many and why.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::Finding;
use crate::{
    aggregate::{PeerId, SynSample, SynSamples},
    clock::Clock,
};

/// Rates TCP stacks run their timestamp clocks at, most common first: Linux ≥ 4.13 and the
/// BSDs 1000 Hz, older Linux HZ 250 or 100, some embedded stacks 10 Hz.
const STANDARD_HZ: [f64; 4] = [1000.0, 250.0, 100.0, 10.0];
/// Slack for one clock: queueing and scheduling on the path (seconds), tick granularity
/// (ticks) and rate error of a clock against ours (fraction).
const PATH_JITTER_S: f64 = 0.05;
const TICK_SLACK: f64 = 2.0;
const RATE_ERROR: f64 = 0.01;
/// Span a clock's points must cover before its rate is measured rather than assumed.
const MIN_SPAN_FOR_RATE_S: f64 = 1.0;

/// One timestamp clock seen from one address.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClockEstimate {
    /// Ticks per second: measured when the clock's SYNs span at least a second, else the
    /// standard rate they fit.
    pub hz: f64,
    pub measured: bool,
    pub syns: usize,
    /// Source ports whose SYNs carried this clock.
    pub ports: Vec<u16>,
    pub first_tsval: u32,
    pub last_tsval: u32,
    /// How far ahead of the first clock this one runs, in seconds (0 for the first).
    pub ahead_of_first_s: f64,
}

/// Every clock seen from one peer, and what they prove.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PeerClocks {
    pub peer: String,
    pub netns: String,
    /// SYNs with a timestamp that were sampled.
    pub syns: usize,
    pub clocks: Vec<ClockEstimate>,
    /// Clocks that must belong to different hosts (0 or 1: no proof of several hosts).
    pub hosts_at_least: usize,
    /// SYNs left out of the estimate, by why.
    pub excluded: BTreeMap<String, usize>,
    /// Why, in words; empty when nothing is proven.
    pub evidence: Vec<String>,
    /// The container, pod or host behind `netns` (set by the session).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<crate::workload::Workload>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    ts_ns: u64,
    t_s: f64,
    tsval: u32,
    sport: u16,
}

#[derive(Clone, Debug)]
struct Line {
    first: Point,
    last: Point,
    points: usize,
    ports: BTreeSet<u16>,
    /// Known once the points span long enough, or once a second point picked a standard rate.
    hz: Option<f64>,
}

impl Line {
    fn new(p: Point) -> Line {
        Line { first: p, last: p, points: 1, ports: BTreeSet::from([p.sport]), hz: None }
    }

    /// How far `p` lies off this line, in ticks, and the rate that fits it; None if it cannot
    /// be on it.
    fn fit(&self, p: &Point) -> Option<(f64, f64)> {
        let dt = p.t_s - self.last.t_s;
        let ticks = p.tsval.wrapping_sub(self.last.tsval) as i32 as f64;
        let rates: &[f64] = match &self.hz {
            Some(hz) => std::slice::from_ref(hz),
            None => &STANDARD_HZ,
        };
        rates
            .iter()
            .map(|hz| ((ticks - hz * dt).abs(), *hz))
            .filter(|(off, hz)| *off <= TICK_SLACK + hz * (PATH_JITTER_S + RATE_ERROR * dt))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    }

    fn add(&mut self, p: Point, fitted_hz: f64) {
        self.last = p;
        self.points += 1;
        self.ports.insert(p.sport);
        let span = p.t_s - self.first.t_s;
        self.hz = Some(if span >= MIN_SPAN_FOR_RATE_S {
            p.tsval.wrapping_sub(self.first.tsval) as i32 as f64 / span
        } else {
            fitted_hz
        });
    }

    fn measured(&self) -> bool {
        self.last.t_s - self.first.t_s >= MIN_SPAN_FOR_RATE_S
    }

    /// The TSval this clock shows at time `t_s`.
    fn tsval_at(&self, t_s: f64) -> f64 {
        self.first.tsval as f64 + self.hz.unwrap_or(STANDARD_HZ[0]) * (t_s - self.first.t_s)
    }
}

/// SYNs the kernel dropped for what they are rather than for their timestamp, by (source
/// port, TSval, `bpf_ktime_get_ns` of the drop) → drop reason: `TCP_INVALID_SYN` (a SYN on a
/// connection this host holds open: a replay, or a 4-tuple reused while still live) and
/// `TCP_CSUM` (a bad checksum: the TSval may be as corrupt as the rest).
pub type Discarded = BTreeMap<(u16, u32, u64), String>;

/// A SYN sample and a drop are the same packet if the drop follows the SYN's arrival within
/// this (the same softirq, in practice microseconds): the original SYN of a replayed one,
/// accepted earlier, carries the same port and TSval and must not be taken for it.
const SAME_PACKET_NS: u64 = 50_000_000;

/// The drop reason of the SYN that arrived at `p`, if the kernel dropped it for what it is.
fn dropped<'a>(discarded: &'a Discarded, p: &Point) -> Option<&'a String> {
    discarded.range((p.sport, p.tsval, p.ts_ns)..=(p.sport, p.tsval, p.ts_ns + SAME_PACKET_NS)).next().map(|(_, r)| r)
}

/// What the kernel did with one peer's SYNs, beside the SYN samples.
#[derive(Clone, Debug, Default)]
pub struct KernelVerdicts {
    /// Source ports of SYNs rejected as older than the last connection on the same 4-tuple
    /// (PAWS against TIME_WAIT).
    pub time_wait_rejected_ports: BTreeSet<u16>,
    /// The (source port, TSval) of those rejected SYNs that were sampled.
    pub time_wait_rejected: BTreeSet<(u16, u32)>,
    pub discarded: Discarded,
}

const REPEATED: &str = "repeated a TSval already seen from this address (a replay or retransmission of \
                        an earlier SYN carries no clock of its own)";
const IN_THE_PAST: &str = "lay within the TSvals one clock had already sent on the same source port (an \
                           older SYN of that clock, replayed)";

fn dropped_as(reason: &str) -> String {
    format!("dropped by the kernel as {reason} (its TSval proves nothing)")
}

/// Whether `tsval` lies between the first and last TSval of `line`, in wrapping arithmetic.
fn within(line: &Line, tsval: u32) -> bool {
    tsval.wrapping_sub(line.first.tsval) <= line.last.tsval.wrapping_sub(line.first.tsval)
}

/// Assigns each SYN, in arrival order, to the clock line it fits best, or starts a new one;
/// SYNs whose TSval proves nothing are counted in `excluded` instead.
/// `replayed` gets the (source port, TSval) of the SYNs left out as repeats of a clock's past.
fn lines(
    samples: &[SynSample],
    discarded: &Discarded,
    excluded: &mut BTreeMap<String, usize>,
    replayed: &mut BTreeSet<(u16, u32)>,
) -> Vec<Line> {
    let mut points: Vec<Point> = samples
        .iter()
        .filter_map(|s| Some(Point { ts_ns: s.ts_ns, t_s: s.ts_ns as f64 / 1e9, tsval: s.tsval?, sport: s.sport }))
        .collect();
    points.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    let mut seen: BTreeSet<u32> = BTreeSet::new();
    let mut lines: Vec<Line> = Vec::new();
    for p in points {
        if let Some(reason) = dropped(discarded, &p) {
            *excluded.entry(dropped_as(reason)).or_default() += 1;
            continue;
        }
        if !seen.insert(p.tsval) {
            *excluded.entry(REPEATED.to_string()).or_default() += 1;
            replayed.insert((p.sport, p.tsval));
            continue;
        }
        let best = lines
            .iter()
            .enumerate()
            .filter_map(|(i, line)| line.fit(&p).map(|(off, hz)| (i, off, hz)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((i, _, hz)) => lines[i].add(p, hz),
            None if lines.iter().any(|l| l.ports.contains(&p.sport) && within(l, p.tsval)) => {
                *excluded.entry(IN_THE_PAST.to_string()).or_default() += 1;
                replayed.insert((p.sport, p.tsval));
            }
            None => lines.push(Line::new(p)),
        }
    }
    lines
}

/// The clocks of one peer and what they prove about the hosts behind it. A SYN the kernel
/// rejected as older than the last connection on the same 4-tuple (PAWS against TIME_WAIT)
/// shows time running backwards across connections, which one host's clock does not do —
/// unless that SYN was a replay of the clock's own past.
pub fn estimate(peer: &str, netns: &str, samples: &[SynSample], kernel: &KernelVerdicts) -> PeerClocks {
    let mut excluded = BTreeMap::new();
    let mut replayed = BTreeSet::new();
    let lines = lines(samples, &kernel.discarded, &mut excluded, &mut replayed);
    // A port whose every sampled rejection was a replay proves nothing.
    let rejected_ports: BTreeSet<u16> = kernel
        .time_wait_rejected_ports
        .iter()
        .copied()
        .filter(|port| {
            let mut sampled = kernel.time_wait_rejected.iter().filter(|(p, _)| p == port).peekable();
            sampled.peek().is_none() || sampled.any(|r| !replayed.contains(r))
        })
        .collect();
    let rejected_ports = &rejected_ports;
    let mut owners: HashMap<u16, Vec<usize>> = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        for port in &line.ports {
            owners.entry(*port).or_default().push(i);
        }
    }
    let mut evidence = Vec::new();
    let mut proven: BTreeSet<usize> = BTreeSet::new();
    let first = lines.first();
    let gap = |i: usize, j: usize| {
        let t = lines[j].first.t_s;
        (lines[j].first.tsval as f64 - lines[i].tsval_at(t)) / lines[i].hz.unwrap_or(STANDARD_HZ[0])
    };
    // One 4-tuple, several clocks: one host keeps one offset per 4-tuple, so these are hosts.
    for (port, clocks) in owners.iter().filter(|(_, c)| c.len() > 1).collect::<BTreeMap<_, _>>() {
        proven.extend(clocks.iter().copied());
        let gaps: Vec<String> =
            clocks.iter().skip(1).map(|j| format!("{:+.1} s", gap(clocks[0], *j))).collect();
        evidence.push(format!(
            "source port {port} carried TSvals of {} clocks (offsets from the first: {}); one host keeps \
             one timestamp offset per connection 4-tuple",
            clocks.len(),
            gaps.join(", ")
        ));
    }
    // A clock shared by several ports is a host clock (no per-connection offset); two of
    // them, or one beside connections with their own offsets, are two hosts.
    let shared: Vec<usize> = (0..lines.len()).filter(|i| lines[*i].ports.len() > 1).collect();
    if shared.len() > 1 {
        proven.extend(shared.iter().copied());
        evidence.push(format!(
            "{} clocks are each shared by several source ports (one clock per host, no per-connection \
             offset), at different offsets",
            shared.len()
        ));
    }
    let measured: Vec<&Line> = lines.iter().filter(|l| l.measured()).collect();
    if let (Some(slow), Some(fast)) = (
        measured.iter().map(|l| l.hz.unwrap_or(0.0)).reduce(f64::min),
        measured.iter().map(|l| l.hz.unwrap_or(0.0)).reduce(f64::max),
    ) && fast > slow * 1.1
    {
        evidence.push(format!("the clocks tick at different rates ({slow:.0} Hz and {fast:.0} Hz)"));
        proven.extend((0..lines.len()).filter(|i| lines[*i].measured()));
    }
    if !rejected_ports.is_empty() {
        let ports: Vec<String> = rejected_ports.iter().map(u16::to_string).collect();
        evidence.push(format!(
            "the kernel rejected SYNs from source port(s) {} as older than the last connection on the same \
             4-tuple (PAWS against TIME_WAIT): timestamps went backwards across connections",
            ports.join(", ")
        ));
    }
    let hosts = if rejected_ports.is_empty() { proven.len() } else { proven.len().max(2) };
    if !excluded.is_empty() {
        let left_out: Vec<String> = excluded.iter().map(|(why, n)| format!("{n} that {why}")).collect();
        evidence.push(format!("SYNs left out: {}", left_out.join("; ")));
    }
    let clocks = lines
        .iter()
        .enumerate()
        .map(|(i, line)| ClockEstimate {
            hz: (line.hz.unwrap_or(STANDARD_HZ[0]) * 10.0).round() / 10.0,
            measured: line.measured(),
            syns: line.points,
            ports: line.ports.iter().copied().collect(),
            first_tsval: line.first.tsval,
            last_tsval: line.last.tsval,
            ahead_of_first_s: if i == 0 || first.is_none() { 0.0 } else { (gap(0, i) * 10.0).round() / 10.0 },
        })
        .collect();
    PeerClocks {
        peer: peer.to_string(),
        netns: netns.to_string(),
        syns: lines.iter().map(|l| l.points).sum(),
        clocks,
        hosts_at_least: if hosts > 1 { hosts } else { 0 },
        evidence: if hosts > 1 { evidence } else { Vec::new() },
        excluded,
        workload: None,
    }
}

/// Settings of the running kernel that change the advice.
#[derive(Clone, Debug, Default)]
pub struct ClockFacts {
    pub release: String,
    pub tcp_timestamps: Option<u8>,
    /// `net.ipv4.tcp_tw_recycle`; None where the kernel no longer has it (removed in 4.12).
    pub tcp_tw_recycle: Option<u8>,
}

/// Clock estimates of every sampled peer; `kernel` gives, per peer, what the kernel did with
/// its SYNs.
pub fn all(
    syns: &SynSamples,
    kernel: &dyn Fn(&PeerId) -> KernelVerdicts,
    netns_name: impl Fn(u32) -> String,
) -> Vec<PeerClocks> {
    let mut out: Vec<PeerClocks> = syns
        .by_peer
        .iter()
        .map(|(id, samples)| estimate(&id.addr.to_string(), &netns_name(id.netns), samples, &kernel(id)))
        .filter(|c| c.syns > 0)
        .collect();
    out.sort_by(|a, b| (&a.netns, &a.peer).cmp(&(&b.netns, &b.peer)));
    out
}

/// One `nat_timestamp_clocks` finding per peer whose SYNs prove several hosts.
/// `facts` gives the settings of a namespace (by inode): the advice follows the receiving
/// namespace's own sysctls.
pub fn findings(
    estimates: &[PeerClocks],
    syns: &SynSamples,
    clock: &Clock,
    duration_s: f64,
    facts: &dyn Fn(u32) -> ClockFacts,
    ids: &HashMap<(String, String), PeerId>,
) -> Vec<Finding> {
    estimates
        .iter()
        .filter(|c| c.hosts_at_least >= 2)
        .map(|c| {
            let id = ids.get(&(c.peer.clone(), c.netns.clone()));
            let samples = id.and_then(|id| syns.by_peer.get(id));
            let first = samples.and_then(|s| s.iter().map(|x| x.ts_ns).min()).unwrap_or(0);
            let last = samples.and_then(|s| s.iter().map(|x| x.ts_ns).max()).unwrap_or(0);
            let local: BTreeSet<String> =
                samples.into_iter().flatten().map(|s| std::net::SocketAddr::new(s.local, s.dport).to_string()).collect();
            let rate = if duration_s > 0.0 { c.syns as f64 / duration_s } else { 0.0 };
            Finding {
                kind: "nat_timestamp_clocks",
                variant: "several_hosts",
                peer: c.peer.clone(),
                netns: c.netns.clone(),
                local: local.into_iter().collect(),
                count: c.syns as u64,
                rate_per_s: (rate * 1000.0).round() / 1000.0,
                first_seen: clock.rfc3339(first),
                last_seen: clock.rfc3339(last),
                // The proofs are the finding's evidence, listed once, not repeated here.
                summary: format!(
                    "{} sends TCP timestamps from at least {} different clocks: it hides several hosts \
                     (a NAT, load balancer or proxy).",
                    c.peer, c.hosts_at_least
                ),
                advice: advice(&c.peer, &facts(id.map_or(0, |id| id.netns))),
                clocks: Some(c.hosts_at_least),
                evidence: Some(c.evidence.clone()),
                disproved_by: Some(format!(
                    "the TSvals proving it turning out to be one clock's (replayed or rewritten on the way): \
                     capture the SYNs from {} and compare TSvals per source port",
                    c.peer
                )),
                ..Finding::default()
            }
        })
        .collect()
}

fn advice(peer: &str, facts: &ClockFacts) -> String {
    let recycle = match facts.tcp_tw_recycle {
        Some(1) => format!(
            "net.ipv4.tcp_tw_recycle=1 here: the kernel ({}) rejects SYNs whose timestamp is older than the \
             last one seen from {peer} within 60 s, so the hosts behind it lock each other out. Set it to 0 \
             (the setting was removed in Linux 4.12 for exactly this reason).",
            facts.release
        ),
        Some(_) => "net.ipv4.tcp_tw_recycle is 0 here; keep it so.".to_string(),
        None => format!(
            "This kernel ({}) has no tcp_tw_recycle (removed in 4.12), so only a reconnect on a 4-tuple this \
             host still holds in TIME_WAIT is judged against another host's clock (PAWS against TIME_WAIT).",
            facts.release
        ),
    };
    let timestamps = match facts.tcp_timestamps {
        Some(0) => " Timestamps are off here (net.ipv4.tcp_timestamps=0).",
        Some(1) => " This host sends timestamps with a random offset per connection (tcp_timestamps=1, Linux \
                    4.10 and later); clients behind the NAT that do the same have unrelated clocks, clients \
                    with tcp_timestamps=2 or other stacks share one clock per host.",
        Some(2) => " This host sends timestamps without random offset (tcp_timestamps=2).",
        _ => "",
    };
    format!(
        "Nothing is wrong with {peer} as such, but every check that compares timestamps per address or per \
         4-tuple misjudges it. {recycle} Avoid the server closing connections first (so it does not hold \
         TIME_WAIT for clients behind the NAT), or have the NAT spread source ports (random port \
         allocation) so reused 4-tuples are rare.{timestamps}"
    )
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn syn(t_ms: u64, tsval: u32, sport: u16) -> SynSample {
        SynSample {
            ts_ns: t_ms * 1_000_000,
            sport,
            dport: 443,
            local: IpAddr::from([198, 51, 100, 1]),
            tsval: Some(tsval),
        }
    }

    /// A SYN and its retransmissions 1 s and 3 s later, from a clock at `offset` and `hz`.
    fn attempt(at_ms: u64, offset: u32, hz: u64, sport: u16) -> Vec<SynSample> {
        [0, 1000, 3000]
            .iter()
            .map(|d| syn(at_ms + d, offset.wrapping_add(((at_ms + d) * hz / 1000) as u32), sport))
            .collect()
    }

    #[test]
    fn two_clocks_on_one_source_port_are_two_hosts() {
        let mut samples = attempt(0, 5_000_000, 1000, 41000);
        samples.extend(attempt(5_000, 4_000_000_000, 1000, 41000));
        samples.extend(attempt(10_000, 5_000_000, 1000, 41000));
        let c = estimate("198.51.100.7", "srv", &samples, &KernelVerdicts::default());
        assert_eq!(c.clocks.len(), 2, "{c:#?}");
        assert_eq!(c.hosts_at_least, 2);
        assert_eq!(c.clocks[0].syns, 6);
        assert!(c.clocks[0].measured && (c.clocks[0].hz - 1000.0).abs() < 5.0, "{c:#?}");
        assert!(c.evidence[0].contains("source port 41000"), "{:?}", c.evidence);
    }

    #[test]
    fn one_host_with_a_random_offset_per_connection_proves_nothing() {
        let samples: Vec<SynSample> =
            (0..20u32).map(|i| syn(i as u64 * 300, i.wrapping_mul(0x9e37_79b9), 40000 + i as u16)).collect();
        let c = estimate("203.0.113.2", "srv", &samples, &KernelVerdicts::default());
        assert_eq!(c.clocks.len(), 20);
        assert_eq!(c.hosts_at_least, 0);
        assert!(c.evidence.is_empty());
    }

    #[test]
    fn one_host_clock_across_ports_is_one_clock() {
        let samples: Vec<SynSample> =
            (0..10u64).map(|i| syn(i * 700, (1_000_000 + i * 700 + i % 3) as u32, 40000 + i as u16)).collect();
        let c = estimate("203.0.113.3", "srv", &samples, &KernelVerdicts::default());
        assert_eq!(c.clocks.len(), 1, "{c:#?}");
        assert_eq!(c.clocks[0].ports.len(), 10);
        assert_eq!(c.hosts_at_least, 0);
    }

    #[test]
    fn two_host_clocks_each_over_several_ports_are_two_hosts() {
        let mut samples = Vec::new();
        for i in 0..6u64 {
            samples.push(syn(i * 500, (10_000 + i * 500) as u32, 40000 + i as u16));
            samples.push(syn(i * 500 + 100, (900_000 + i * 500 + 100) as u32, 50000 + i as u16));
        }
        let c = estimate("198.51.100.9", "srv", &samples, &KernelVerdicts::default());
        assert_eq!((c.clocks.len(), c.hosts_at_least), (2, 2), "{c:#?}");
        assert!((c.clocks[1].ahead_of_first_s - 890.0).abs() < 1.0, "{c:#?}");
    }

    #[test]
    fn a_clock_at_another_rate_is_told_apart() {
        let mut samples = attempt(0, 100, 1000, 41000);
        samples.extend(attempt(0, 5000, 100, 41000).into_iter().map(|s| SynSample { ts_ns: s.ts_ns + 1_000, ..s }));
        let c = estimate("198.51.100.7", "srv", &samples, &KernelVerdicts::default());
        assert_eq!(c.clocks.len(), 2, "{c:#?}");
        let mut rates: Vec<f64> = c.clocks.iter().map(|k| k.hz.round()).collect();
        rates.sort_by(f64::total_cmp);
        assert_eq!(rates, [100.0, 1000.0]);
        assert!(c.evidence.iter().any(|e| e.contains("different rates")), "{:?}", c.evidence);
    }

    #[test]
    fn a_clock_going_backwards_is_another_clock() {
        let samples = vec![syn(0, 50_000, 41000), syn(2000, 40_000, 41000)];
        let c = estimate("198.51.100.7", "srv", &samples, &KernelVerdicts::default());
        assert_eq!(c.clocks.len(), 2);
        assert_eq!(c.hosts_at_least, 2);
        assert!(c.clocks[1].ahead_of_first_s < -10.0, "{c:#?}");
    }

    #[test]
    fn a_syn_rejected_against_time_wait_is_time_going_backwards() {
        let samples = attempt(0, 7_000_000, 1000, 41000);
        let alone = estimate("198.51.100.7", "srv", &samples, &KernelVerdicts::default());
        assert_eq!((alone.clocks.len(), alone.hosts_at_least), (1, 0));
        let rejected = estimate("198.51.100.7", "srv", &samples, &KernelVerdicts {
            time_wait_rejected_ports: BTreeSet::from([41000]),
            ..KernelVerdicts::default()
        });
        assert_eq!(rejected.hosts_at_least, 2);
        assert!(rejected.evidence[0].contains("port(s) 41000"), "{:?}", rejected.evidence);
    }

    /// The case: one client's SYN, then that very SYN replayed 3.6 s and 4.8 s later on
    /// the live 4-tuple.
    fn replayed(first: SynSample) -> Vec<SynSample> {
        let later = |ms: u64| SynSample { ts_ns: first.ts_ns + ms * 1_000_000, ..first };
        vec![first, later(3600), later(4800)]
    }

    #[test]
    fn a_replayed_syn_is_no_second_clock() {
        let c = estimate("198.51.100.2", "srv", &replayed(syn(0, 7_000_000, 41000)), &KernelVerdicts::default());
        assert_eq!((c.clocks.len(), c.hosts_at_least), (1, 0), "{c:#?}");
        assert_eq!(c.excluded.values().sum::<usize>(), 2, "{c:#?}");
        assert!(c.excluded.keys().all(|why| why.contains("replay")), "{c:#?}");
    }

    #[test]
    fn the_original_of_a_syn_whose_replay_the_kernel_dropped_still_counts() {
        let discarded = Discarded::from([((41000, 7_000_000, 3_600_000_010), "TCP_INVALID_SYN".to_string())]);
        let kernel = KernelVerdicts { discarded, ..KernelVerdicts::default() };
        let c = estimate("198.51.100.2", "srv", &replayed(syn(0, 7_000_000, 41000)), &kernel);
        assert_eq!((c.clocks.len(), c.syns, c.hosts_at_least), (1, 1, 0), "{c:#?}");
        assert!(c.excluded.keys().any(|why| why.contains("TCP_INVALID_SYN")), "{c:#?}");
    }

    #[test]
    fn an_older_syn_of_a_clock_replayed_is_its_past_not_another_clock() {
        let mut samples = attempt(0, 7_000_000, 1000, 41000);
        // The first SYN of the attempt (TSval 7_000_000) and one between, sent again later.
        samples.push(syn(6000, 7_000_500, 41000));
        let c = estimate("198.51.100.2", "srv", &samples, &KernelVerdicts::default());
        assert_eq!((c.clocks.len(), c.hosts_at_least), (1, 0), "{c:#?}");
        assert!(c.excluded.keys().any(|why| why.contains("same source port")), "{c:#?}");
    }

    #[test]
    fn syns_the_kernel_dropped_as_invalid_or_corrupt_prove_nothing() {
        let mut samples = attempt(0, 7_000_000, 1000, 41000);
        samples.push(syn(5000, 123_456, 41000));
        samples.push(syn(5500, 999_999_999, 41000));
        let discarded = Discarded::from([
            ((41000, 123_456, 5_000_000_000), "TCP_INVALID_SYN".to_string()),
            ((41000, 999_999_999, 5_500_000_100), "TCP_CSUM".to_string()),
        ]);
        let c = estimate("198.51.100.2", "srv", &samples, &KernelVerdicts { discarded, ..KernelVerdicts::default() });
        assert_eq!((c.clocks.len(), c.hosts_at_least), (1, 0), "{c:#?}");
        assert_eq!(c.excluded.len(), 2, "{c:#?}");
    }

    #[test]
    fn a_replay_rejected_against_time_wait_proves_nothing_but_a_new_clock_does() {
        let original = syn(0, 7_000_000, 41000);
        let replay = KernelVerdicts {
            time_wait_rejected_ports: BTreeSet::from([41000]),
            time_wait_rejected: BTreeSet::from([(41000, 7_000_000)]),
            ..KernelVerdicts::default()
        };
        let c = estimate("198.51.100.2", "srv", &replayed(original), &replay);
        assert_eq!(c.hosts_at_least, 0, "{c:#?}");
        // Another host's SYN on the port, rejected: still proof, and what was left out is said.
        let mut samples = replayed(original);
        samples.push(syn(6000, 3_000_000_000, 41000));
        let other = KernelVerdicts { time_wait_rejected: BTreeSet::from([(41000, 3_000_000_000)]), ..replay };
        let c = estimate("198.51.100.2", "srv", &samples, &other);
        assert_eq!(c.hosts_at_least, 2, "{c:#?}");
        assert!(c.evidence.iter().any(|e| e.starts_with("SYNs left out: 2 that repeated")), "{:?}", c.evidence);
    }

    #[test]
    fn advice_follows_the_kernel() {
        let modern = ClockFacts { release: "6.18.0".into(), tcp_timestamps: Some(1), tcp_tw_recycle: None };
        let text = advice("198.51.100.7", &modern);
        assert!(text.contains("removed in 4.12") && text.contains("tcp_timestamps=1"), "{text}");
        let old = ClockFacts { release: "3.10.0".into(), tcp_timestamps: Some(1), tcp_tw_recycle: Some(1) };
        assert!(advice("198.51.100.7", &old).contains("Set it to 0"));
    }
}
