//! ACK loops (seed 001): two hosts that each see the other's segments as out of window and
//! answer every one with a duplicate ACK, which the other again finds out of window. And the
//! look-alikes: a peer that keeps sending out-of-window segments while `tcp_invalid_ratelimit`
//! suppresses most of our answers, or while nothing suppresses them (`tcp_invalid_ratelimit=0`),
//! so that one end sees as many in as out, just as in a loop.
//!
//! Counts at one end cannot tell a loop from an unthrottled flood: in both, every segment in is
//! answered by one out. What tells them apart is the other end: in a loop it receives our
//! duplicate ACKs as out of window and answers each. So a flow is called an `ack_loop` when
//! its other end is seen too (both ends local: the same 4-tuple, swapped, in another
//! namespace, matching our rates the other way round in the same interval), or, with the other
//! end out of sight, when the segments come at one per round trip: the connection's smoothed
//! RTT (read by the kernel program as we send each duplicate ACK) times the rate in is about 1,
//! as when each segment is the answer to our previous one; a sender's own clock does not follow
//! the path's RTT. One end answering everything at any other pace is an `out_of_window_flood`
//! of variant `unthrottled`. (A loop with several segments circling at once also runs at a
//! multiple of one per round trip; it is not claimed from one end, since a flood at that pace
//! would look the same.)
//!
//! The detector is pure: it is fed the kernel's cumulative per-flow counts every half second
//! ([`Detector::observe`]) and judges each interval, so its verdicts can be tested on recorded
//! rates. An episode starts after [`Rules::sustain_s`] of qualifying intervals and ends after
//! [`Rules::quiet_s`] without; `started` is the start of its first qualifying interval,
//! `ended` the end of its last.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use super::{Finding, FlowFacts};
pub use crate::aggregate::FlowId;

/// A flow's cumulative counts as the kernel keeps them (`netdiag_common::FlowStats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub oow_timestamp: u64,
    pub oow_sequence: u64,
    pub oow_ack: u64,
    pub oow_pure_ack: u64,
    pub dupacks_out: u64,
    pub progress_out: u64,
    pub limiter_suppressed: u64,
    /// Not a count: the connection's smoothed RTT (µs) at our latest duplicate ACK, 0 unknown.
    pub srtt_us: u64,
}

impl Totals {
    pub fn oow(&self) -> u64 {
        self.oow_timestamp + self.oow_sequence + self.oow_ack
    }

    /// What happened between `earlier` and `self`; a flow the kernel evicted and counted
    /// afresh since starts from zero.
    fn since(&self, earlier: &Totals) -> Totals {
        if self.oow() < earlier.oow() || self.dupacks_out < earlier.dupacks_out {
            return *self;
        }
        Totals {
            oow_timestamp: self.oow_timestamp.saturating_sub(earlier.oow_timestamp),
            oow_sequence: self.oow_sequence.saturating_sub(earlier.oow_sequence),
            oow_ack: self.oow_ack.saturating_sub(earlier.oow_ack),
            oow_pure_ack: self.oow_pure_ack.saturating_sub(earlier.oow_pure_ack),
            dupacks_out: self.dupacks_out - earlier.dupacks_out,
            progress_out: self.progress_out.saturating_sub(earlier.progress_out),
            limiter_suppressed: self.limiter_suppressed.saturating_sub(earlier.limiter_suppressed),
            srtt_us: self.srtt_us,
        }
    }

    fn add(&mut self, other: &Totals) {
        self.oow_timestamp += other.oow_timestamp;
        self.oow_sequence += other.oow_sequence;
        self.oow_ack += other.oow_ack;
        self.oow_pure_ack += other.oow_pure_ack;
        self.dupacks_out += other.dupacks_out;
        self.progress_out += other.progress_out;
        self.limiter_suppressed += other.limiter_suppressed;
        if other.srtt_us != 0 {
            self.srtt_us = other.srtt_us;
        }
    }

    /// Answers the limiter suppressed: its own count where its return value is traced, else
    /// out-of-window segments in that got no duplicate ACK out (data segments are always
    /// answered, so every one missing was a pure ACK the limiter held back).
    pub fn suppressed(&self, limiter_traced: bool) -> u64 {
        if limiter_traced { self.limiter_suppressed } else { self.oow().saturating_sub(self.dupacks_out) }
    }

    /// Why the segments were out of window: the check that rejected most of them.
    pub fn why(&self) -> &'static str {
        let by_why = [("timestamps", self.oow_timestamp), ("sequence", self.oow_sequence), ("ack", self.oow_ack)];
        by_why.iter().max_by_key(|(_, n)| *n).map_or("sequence", |(why, _)| why)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Both ends seen, each answering the other.
    AckLoop,
    /// One end seen, the segments in coming at one per round trip, as answers to ours do.
    AckLoopOneEnd,
    /// Most answers suppressed by the limiter.
    OutOfWindowFlood,
    /// Every segment answered, and no sign the segments answer ours.
    UnthrottledFlood,
}

impl Kind {
    pub fn is_loop(self) -> bool {
        matches!(self, Kind::AckLoop | Kind::AckLoopOneEnd)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::AckLoop | Kind::AckLoopOneEnd => "ack_loop",
            Kind::OutOfWindowFlood | Kind::UnthrottledFlood => "out_of_window_flood",
        }
    }
}

/// Thresholds. Ordinary duplicate ACKs (loss, reordering, SACK) answer in-window segments and
/// never count as out of window; a spurious retransmission is out of window but comes alone.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Out-of-window segments in (and, for a loop, duplicate ACKs out) per second, at least.
    pub min_rate: f64,
    /// How long intervals must qualify before an episode is declared.
    pub sustain_s: f64,
    /// How long without qualifying intervals ends an episode.
    pub quiet_s: f64,
    /// Whether `limiter_suppressed` is counted by the kernel (fexit/kretprobe on
    /// `tcp_oow_rate_limited`) rather than derived.
    pub limiter_traced: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules { min_rate: 10.0, sustain_s: 1.0, quiet_s: 1.0, limiter_traced: false }
    }
}

#[derive(Clone, Copy, Debug)]
struct Interval {
    from: f64,
    to: f64,
    delta: Totals,
    /// The other end's namespace and counts over the same interval, where it is local too.
    other_end: Option<(u32, Totals)>,
}

/// Whether `a` and `b` are within a factor of two of each other.
fn matched(a: u64, b: u64) -> bool {
    a * 2 >= b && b * 2 >= a
}

/// Segments per round trip, for which a loop seen from one end is claimed: one in flight, give
/// or take a factor of two for the RTT having moved since the kernel last measured it.
const ONE_PER_ROUND_TRIP: std::ops::RangeInclusive<f64> = 0.5..=2.0;

/// How many segments came in per smoothed round trip, where the RTT is known.
pub fn per_round_trip(rate_per_s: f64, srtt_us: u64) -> Option<f64> {
    (srtt_us != 0).then(|| rate_per_s * srtt_us as f64 / 1e6)
}

impl Interval {
    fn kind(&self, rules: &Rules) -> Option<Kind> {
        let dt = self.to - self.from;
        if dt <= 0.0 {
            return None;
        }
        let (oow, dup) = (self.delta.oow(), self.delta.dupacks_out);
        if (oow as f64) / dt < rules.min_rate {
            return None;
        }
        // Every rejected segment answered, and the answers rejected in turn: the two rates
        // match within a factor of two, what comes in is mostly the peer's own duplicate ACKs
        // (data segments out of window are answered too, but a loop carries none), and nothing
        // moves forward.
        let answered_in_kind = dup as f64 / dt >= rules.min_rate && matched(dup, oow);
        let acks_in = self.delta.oow_pure_ack * 2 >= oow;
        let stuck = self.delta.progress_out * 100 <= dup;
        if answered_in_kind && acks_in && stuck {
            // The other end rejects what we send and sends what we reject.
            let answers_ours =
                self.other_end.is_some_and(|(_, o)| matched(o.oow(), dup) && matched(o.dupacks_out, oow));
            if answers_ours {
                return Some(Kind::AckLoop);
            }
            let paced_by_rtt = per_round_trip(oow as f64 / dt, self.delta.srtt_us)
                .is_some_and(|n| ONE_PER_ROUND_TRIP.contains(&n));
            return Some(if paced_by_rtt { Kind::AckLoopOneEnd } else { Kind::UnthrottledFlood });
        }
        if self.delta.suppressed(rules.limiter_traced) * 2 >= oow {
            return Some(Kind::OutOfWindowFlood);
        }
        None
    }
}

/// An ACK loop or out-of-window flood on one flow, open (`ended` None) or over.
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    pub kind: Kind,
    pub flow: FlowId,
    /// Seconds since the Unix epoch.
    pub started: f64,
    pub ended: Option<f64>,
    /// End of the last qualifying interval.
    pub last_active: f64,
    /// Counts over the qualifying intervals and the short gaps between them.
    pub totals: Totals,
    pub limiter_traced: bool,
    /// A loop's other end: the namespace that holds the same connection the other way round.
    pub other_end_netns: Option<u32>,
}

impl Episode {
    pub fn span_s(&self) -> f64 {
        (self.last_active - self.started).max(f64::EPSILON)
    }

    pub fn rate(&self, count: u64) -> f64 {
        count as f64 / self.span_s()
    }

    pub fn suppressed(&self) -> u64 {
        self.totals.suppressed(self.limiter_traced)
    }
}

/// What an observation changed, for a live line on the terminal.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Started(Episode),
    Ended(Episode),
}

#[derive(Debug, Default)]
struct Track {
    last: Totals,
    streak: Vec<Interval>,
    open: Option<Episode>,
    /// Non-qualifying intervals since the open episode's last qualifying one.
    quiet: Vec<Interval>,
}

/// Shortest interval judged.
const MIN_INTERVAL_S: f64 = 0.2;

/// Most flows kept; a host with more flows in trouble keeps the first ones.
const MAX_TRACKS: usize = 65536;

pub struct Detector {
    rules: Rules,
    /// Time of the previous observation: a flow first seen now was counted since then (the
    /// kernel maps are created empty when the session starts).
    last_at: f64,
    tracks: HashMap<FlowId, Track>,
    over: Vec<Episode>,
}

impl Detector {
    pub fn new(rules: Rules, started_at: f64) -> Detector {
        Detector { rules, last_at: started_at, tracks: HashMap::new(), over: Vec::new() }
    }

    /// Judges the interval since the previous observation for every flow; `flows` holds the
    /// kernel's cumulative counts at `at` (seconds since the Unix epoch).
    pub fn observe(&mut self, at: f64, flows: &[(FlowId, Totals)]) -> Vec<Change> {
        // Polls that come in a burst after a stall (the CPUs busy with the loop itself) would
        // judge a few segments over a millisecond: wait for a longer interval instead.
        if at - self.last_at < MIN_INTERVAL_S {
            return Vec::new();
        }
        let from = self.last_at;
        self.last_at = at;
        let flows = placed(flows);
        let mut changes = Vec::new();
        let mut seen: HashSet<FlowId> = HashSet::with_capacity(flows.len());
        let mut deltas: Vec<(FlowId, Totals)> = Vec::with_capacity(flows.len());
        for (flow, totals) in &flows {
            seen.insert(*flow);
            if !self.tracks.contains_key(flow) && self.tracks.len() >= MAX_TRACKS {
                continue;
            }
            let track = self.tracks.entry(*flow).or_default();
            deltas.push((*flow, totals.since(&track.last)));
            track.last = *totals;
        }
        // Each connection's ends by (local, remote): the other end of ours is there swapped.
        let by_ends: HashMap<(SocketAddr, SocketAddr), Vec<(u32, Totals)>> =
            deltas.iter().fold(HashMap::new(), |mut all, (flow, delta)| {
                all.entry((flow.local, flow.remote)).or_default().push((flow.netns, *delta));
                all
            });
        for (flow, delta) in deltas {
            // The busiest end elsewhere: counts the kernel could not place in a namespace
            // (and one tuple reused in several namespaces) must not stand in for it.
            let other_end = by_ends
                .get(&(flow.remote, flow.local))
                .and_then(|ends| {
                    ends.iter()
                        .filter(|(netns, _)| *netns != flow.netns && *netns != UNKNOWN_NETNS)
                        .max_by_key(|(_, d)| d.oow() + d.dupacks_out)
                })
                .copied();
            let Some(track) = self.tracks.get_mut(&flow) else { continue };
            let interval = Interval { from, to: at, delta, other_end };
            changes.extend(step(&self.rules, flow, track, interval, &mut self.over));
        }
        // A flow evicted from the kernel map sends nothing any more: a quiet interval for it.
        for (flow, track) in self.tracks.iter_mut().filter(|(flow, _)| !seen.contains(flow)) {
            let interval = Interval { from, to: at, delta: Totals::default(), other_end: None };
            changes.extend(step(&self.rules, *flow, track, interval, &mut self.over));
        }
        self.tracks.retain(|flow, track| track.open.is_some() || !track.streak.is_empty() || seen.contains(flow));
        changes
    }

    /// Every episode of the session, those still open with `ended` None.
    pub fn episodes(&self) -> Vec<Episode> {
        let mut all = self.over.clone();
        all.extend(self.tracks.values().filter_map(|t| t.open.clone()));
        all.sort_by(|a, b| a.started.total_cmp(&b.started).then(a.flow.cmp(&b.flow)));
        all
    }
}

/// The namespace of counts the kernel could not place: the packet carried no device, socket
/// or route to read it from (seen on 6.1 for a few hundred of a loop's 80 000 drops).
const UNKNOWN_NETNS: u32 = 0;

/// `flows` with each unplaced flow's counts added to the one namespace that holds the same
/// connection; unplaced flows whose tuple no namespace, or several, hold stay as they are.
fn placed(flows: &[(FlowId, Totals)]) -> Vec<(FlowId, Totals)> {
    let mut placed: Vec<(FlowId, Totals)> = flows.iter().filter(|(f, _)| f.netns != UNKNOWN_NETNS).copied().collect();
    for (unplaced, totals) in flows.iter().filter(|(f, _)| f.netns == UNKNOWN_NETNS) {
        let mut holders = placed.iter_mut().filter(|(f, _)| f.local == unplaced.local && f.remote == unplaced.remote);
        match (holders.next(), holders.next()) {
            (Some((_, into)), None) => into.add(totals),
            _ => placed.push((*unplaced, *totals)),
        }
    }
    placed
}

fn step(rules: &Rules, flow: FlowId, track: &mut Track, interval: Interval, over: &mut Vec<Episode>) -> Option<Change> {
    let kind = interval.kind(rules);
    if let Some(episode) = &mut track.open {
        // A loop once proven stays one through an interval where the proof lagged: the other
        // end's counts (its programs skipped on a CPU the loop saturates), or the pace.
        let continues = kind == Some(episode.kind)
            || (episode.kind.is_loop() && kind.is_some_and(|k| k.is_loop() || k == Kind::UnthrottledFlood));
        if continues {
            for gap in track.quiet.drain(..) {
                episode.totals.add(&gap.delta);
            }
            episode.totals.add(&interval.delta);
            episode.last_active = interval.to;
            return None;
        }
        track.quiet.push(interval);
        let quiet_for = interval.to - episode.last_active;
        if track.quiet.len() >= 2 && quiet_for >= rules.quiet_s {
            let mut done = track.open.take()?;
            done.ended = Some(done.last_active);
            track.quiet.clear();
            over.push(done.clone());
            return Some(Change::Ended(done));
        }
        return None;
    }
    match kind {
        Some(kind) if track.streak.first().and_then(|i| i.kind(rules)) == Some(kind) => track.streak.push(interval),
        Some(_) => track.streak = vec![interval],
        None => {
            track.streak.clear();
            return None;
        }
    }
    let (first, last) = (track.streak[0].from, interval.to);
    if track.streak.len() < 2 || last - first < rules.sustain_s {
        return None;
    }
    let mut totals = Totals::default();
    for i in track.streak.drain(..) {
        totals.add(&i.delta);
    }
    let episode = Episode {
        kind: kind?,
        flow,
        started: first,
        ended: None,
        last_active: last,
        totals,
        limiter_traced: rules.limiter_traced,
        other_end_netns: (kind == Some(Kind::AckLoop)).then(|| interval.other_end.map(|(netns, _)| netns)).flatten(),
    };
    track.open = Some(episode.clone());
    Some(Change::Started(episode))
}

/// Settings of the namespace an episode happened in that change the advice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceFacts {
    pub tcp_invalid_ratelimit_ms: Option<u32>,
    pub tcp_timestamps: Option<u8>,
}

/// How the kernel programs serving the per-flow hooks obtained the counts, for a finding's
/// `sources`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sources {
    pub oow_in: String,
    pub dupacks_out: String,
}

impl Sources {
    /// From the mechanism and target serving `oow_received` and `flow_dupacks`.
    pub fn new(oow_in: (&str, &str), dupacks_out: (&str, &str)) -> Sources {
        let dupacks_how = if dupacks_out.0 == "fentry" || dupacks_out.0 == "kprobe" {
            "the stack's answers to out-of-window segments"
        } else {
            "pure ACKs repeating the flow's last segment as they leave"
        };
        Sources {
            oow_in: format!("drop reasons at {} ({}), per flow in a kernel map", oow_in.1, oow_in.0),
            dupacks_out: format!("{dupacks_how}, at {} ({}), per flow in a kernel map", dupacks_out.1, dupacks_out.0),
        }
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(epoch_s: f64) -> String {
    humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(epoch_s.max(0.0))).to_string()
}

/// A round-trip time for people: µs below a millisecond.
fn ms(us: u64) -> String {
    if us >= 1000 { format!("{:.1} ms", us as f64 / 1000.0) } else { format!("{us} µs") }
}

fn rounded(rate: f64) -> f64 {
    (rate * 10.0).round() / 10.0
}

/// One finding per episode.
/// `other_end_netns`: the display name of a loop's other end.
pub fn finding(
    episode: &Episode,
    netns: &str,
    other_end_netns: Option<&str>,
    facts: &NamespaceFacts,
    sources: &Sources,
) -> Finding {
    let t = &episode.totals;
    let (oow, dup, suppressed) = (t.oow(), t.dupacks_out, episode.suppressed());
    let words = Words { episode, netns, other_end_netns, facts };
    let suppressed_source = if episode.limiter_traced {
        "tcp_oow_rate_limited return value (fexit/kretprobe), per flow"
    } else {
        "derived per flow: out-of-window segments in minus duplicate ACKs out (the kernel's total is \
         TcpExtTCPACKSkippedSeq + TcpExtTCPACKSkippedPAWS)"
    };
    let sources = BTreeMap::from([
        ("oow_in", sources.oow_in.clone()),
        ("dupacks_out", sources.dupacks_out.clone()),
        ("dupacks_suppressed", suppressed_source.to_string()),
        ("srtt_us", "tcp_sock.srtt_us, read by the kernel program as each duplicate ACK left".to_string()),
    ]);
    let srtt_us = (t.srtt_us != 0).then_some(t.srtt_us);
    Finding {
        kind: episode.kind.name(),
        variant: if episode.kind == Kind::UnthrottledFlood { "unthrottled" } else { t.why() },
        peer: episode.flow.remote.ip().to_string(),
        netns: netns.to_string(),
        local: vec![episode.flow.local.to_string()],
        count: oow,
        rate_per_s: rounded(episode.rate(oow)),
        first_seen: rfc3339(episode.started),
        last_seen: rfc3339(episode.last_active),
        summary: words.summary(),
        advice: words.advice(),
        evidence: Some(words.evidence()),
        disproved_by: Some(words.disproved_by().to_string()),
        flow: Some(FlowFacts {
            peer_port: episode.flow.remote.port(),
            oow_in_per_s: rounded(episode.rate(oow)),
            dupacks_out_per_s: rounded(episode.rate(dup)),
            dupacks_suppressed_per_s: rounded(episode.rate(suppressed)),
            dupacks_out: dup,
            dupacks_suppressed: suppressed,
            why: t.why(),
            srtt_us,
            segments_per_round_trip: per_round_trip(episode.rate(oow), t.srtt_us).map(|n| (n * 100.0).round() / 100.0),
            started: rfc3339(episode.started),
            ended: episode.ended.map(rfc3339),
            sources,
        }),
        ..Finding::default()
    }
}

struct Words<'a> {
    episode: &'a Episode,
    netns: &'a str,
    other_end_netns: Option<&'a str>,
    facts: &'a NamespaceFacts,
}

impl Words<'_> {
    fn ends(&self) -> String {
        let flow = &self.episode.flow;
        let ns = if self.netns == "root" { String::new() } else { format!(", namespace {}", self.netns) };
        format!("{} <-> {} (local side {}{ns})", flow.remote, flow.local, flow.local)
    }

    fn when(&self) -> String {
        match self.episode.ended {
            Some(ended) => format!("from {} to {}", rfc3339(self.episode.started), rfc3339(ended)),
            None => format!("since {}, still going at the end of the session", rfc3339(self.episode.started)),
        }
    }

    fn why(&self) -> &'static str {
        match self.episode.totals.why() {
            "timestamps" => "their TCP timestamps were older than ones already seen (PAWS)",
            "ack" => "they acknowledged data never sent, or far too old",
            _ => "their sequence numbers were outside the receive window",
        }
    }

    /// The facts the finding rests on.
    fn evidence(&self) -> Vec<String> {
        let e = self.episode;
        let t = &e.totals;
        let mut facts = vec![format!(
            "this end ({}): {:.0} out-of-window segments/s in ({} dropped with the kernel's out-of-window drop \
             reasons, {} of them pure ACKs), {:.0} duplicate ACKs/s out, {:.0}/s suppressed, {} segments \
             moving data out",
            self.netns,
            e.rate(t.oow()),
            t.oow(),
            t.oow_pure_ack,
            e.rate(t.dupacks_out),
            e.rate(e.suppressed()),
            t.progress_out
        )];
        facts.push(match (e.kind, self.other_end_netns) {
            (Kind::AckLoop, Some(other)) => format!(
                "the other end ({other}) rejected our duplicate ACKs as out of window and answered as many, in the \
                 same intervals"
            ),
            _ => "the connection's other end is not on this host: netdiag does not see it reject our duplicate ACKs"
                .into(),
        });
        if e.kind != Kind::AckLoop {
            facts.push(self.pace());
        }
        facts
    }

    /// The segments' pace against the round trip, the one-end proof of a loop or its absence.
    fn pace(&self) -> String {
        let e = self.episode;
        let rate = e.rate(e.totals.oow());
        match per_round_trip(rate, e.totals.srtt_us) {
            None => "the connection's round-trip time could not be read (tcp_sock.srtt_us), so the segments' pace \
                     could not be compared with it"
                .into(),
            Some(n) => {
                let srtt = ms(e.totals.srtt_us);
                if e.kind == Kind::AckLoopOneEnd {
                    format!(
                        "the segments came at {n:.2} per round trip (smoothed RTT {srtt}, tcp_sock.srtt_us, at {rate:.0}/s): \
                         one per round trip, as when each is the answer to our previous duplicate ACK"
                    )
                } else {
                    format!(
                        "the segments came at {} per round trip (smoothed RTT {srtt}, tcp_sock.srtt_us, at {rate:.0}/s): \
                         not one per round trip, the pace of a sender's own clock rather than of answers to ours",
                        if n < 0.01 { "fewer than 0.01".to_string() } else { format!("{n:.2}") }
                    )
                }
            }
        }
    }

    /// What would prove the finding wrong.
    fn disproved_by(&self) -> &'static str {
        match self.episode.kind {
            Kind::AckLoop => {
                "data moving on the flow, or a capture showing the other end's segments are not answers to ours"
            }
            Kind::AckLoopOneEnd => {
                "data moving on the flow, or the segments keeping their pace when the round-trip time changes, or a \
                 capture at the other host showing it sends them unprompted: then it is a flood whose pace happens to \
                 match the RTT"
            }
            Kind::UnthrottledFlood => {
                "the peer's segments following our duplicate ACKs one for one, each about a round-trip time later \
                 (capture on both ends): then it is an ACK loop with an end on another host"
            }
            Kind::OutOfWindowFlood => {
                "TcpExtTCPACKSkippedSeq / TcpExtTCPACKSkippedPAWS not rising while the segments come in"
            }
        }
    }

    fn summary(&self) -> String {
        let e = self.episode;
        let (oow, dup, sup) = (e.rate(e.totals.oow()), e.rate(e.totals.dupacks_out), e.rate(e.suppressed()));
        match e.kind {
            Kind::AckLoop => format!(
                "Flow {} is in an ACK loop {}: {oow:.0} out-of-window segments/s in, {dup:.0} duplicate ACKs/s \
                 out, {sup:.0}/s suppressed by the limiter, and no data moving. The segments were out of window \
                 because {}; each duplicate ACK sent back is rejected the same way at the other end, which \
                 answers it again. Both ends are on this host: namespace {} holds the same connection the other \
                 way round and, in the same intervals, rejected as many of our duplicate ACKs and answered as \
                 many.",
                self.ends(),
                self.when(),
                self.why(),
                self.other_end_netns.unwrap_or("?")
            ),
            Kind::AckLoopOneEnd => format!(
                "Flow {} is in an ACK loop {}: {oow:.0} out-of-window segments/s in, {dup:.0} duplicate ACKs/s \
                 out, {sup:.0}/s suppressed by the limiter, and no data moving. The segments were out of window \
                 because {}, and this host answers each one. The other end, {}, is not on this host, but its \
                 segments come at one per round trip ({:.2} per smoothed RTT of {}): each arrives as the answer to \
                 our previous duplicate ACK would, which a sender's own clock would not match.",
                self.ends(),
                self.when(),
                self.why(),
                e.flow.remote,
                per_round_trip(oow, e.totals.srtt_us).unwrap_or_default(),
                ms(e.totals.srtt_us)
            ),
            Kind::UnthrottledFlood => format!(
                "{} keeps sending out-of-window segments on flow {} {}: {oow:.0}/s in, because {}, and this host \
                 answers every one ({dup:.0} duplicate ACKs/s out, {sup:.0}/s suppressed: the limiter, \
                 tcp_invalid_ratelimit, is not holding answers back). In equals out, as in an ACK loop, but \
                 nothing shows that the segments answer ours: netdiag does not see the connection's other end \
                 (on another host, or in a namespace outside this session's filter) reject our ACKs. It would be a loop if {} answered each of our duplicate ACKs \
                 (its rate would follow the round-trip time); run netdiag there to tell.",
                e.flow.remote,
                self.ends(),
                self.when(),
                self.why(),
                e.flow.remote.ip()
            ),
            Kind::OutOfWindowFlood => format!(
                "{} keeps sending out-of-window segments on flow {} {}: {oow:.0}/s in, because {}; the \
                 limiter (tcp_invalid_ratelimit) suppressed {sup:.0} of our answers/s and let {dup:.0} \
                 duplicate ACKs/s out.",
                e.flow.remote,
                self.ends(),
                self.when(),
                self.why()
            ),
        }
    }

    fn advice(&self) -> String {
        let (a, b) = (self.episode.flow.local, self.episode.flow.remote);
        let ratelimit = match self.facts.tcp_invalid_ratelimit_ms {
            Some(0) => " net.ipv4.tcp_invalid_ratelimit is 0 in this namespace: every out-of-window segment is \
                        answered, so nothing bounds the loop. Set it back to 500 (ms) at once."
                .to_string(),
            Some(ms) => format!(
                " The limiter is on here (tcp_invalid_ratelimit={ms} ms); check it is not 0 on {}, or that the \
                 peer is not spreading the loop over many flows.",
                b.ip()
            ),
            None => " Check net.ipv4.tcp_invalid_ratelimit is not 0 on both hosts.".to_string(),
        };
        let timestamps = match self.facts.tcp_timestamps {
            Some(0) => " TCP timestamps are already off here.",
            _ => "",
        };
        match self.episode.kind {
            Kind::AckLoop | Kind::AckLoopOneEnd => format!(
                "Something on the path between {} and {} rewrites TCP sequence numbers or timestamps \
                 (a firewall or NAT randomising sequence numbers, a load balancer or WAN optimiser, a broken \
                 offload) so that each end's segments arrive out of window at the other: capture on both \
                 hosts (`tcpdump -n 'host {} and port {}'`) and compare SEQ and TSval to find the hop that \
                 changes them. `ss -K dst {} dport = {}` ends this connection and the loop now.{ratelimit} \
                 Where the timestamps are rewritten (seed 001), net.ipv4.tcp_timestamps=0 on one end stops \
                 the PAWS rejections, at the cost of RTT measurement and of protection against wrapped \
                 sequence numbers on fast links: fix the middlebox instead if you can.{timestamps}",
                a.ip(),
                b.ip(),
                b.ip(),
                b.port(),
                b.ip(),
                b.port()
            ),
            Kind::UnthrottledFlood => format!(
                "{} sends segments that do not fit this connection, and nothing here throttles the answers: a \
                 misbehaving or hostile sender (blind injection, spoofed ACKs), or a peer or middlebox whose \
                 sequence numbers or timestamps went wrong. Capture (`tcpdump -n 'host {} and port {}'`) to \
                 see who sends them and whether they answer our ACKs.{ratelimit}{timestamps}",
                b,
                b.ip(),
                b.port()
            ),
            Kind::OutOfWindowFlood => format!(
                "{} sends segments that do not fit this connection: blind injection (spoofed ACKs or \
                 resets), a peer or middlebox whose sequence numbers or timestamps went wrong, or a stale \
                 connection on the other side. The limiter is doing its job; TcpExtTCPACKSkippedSeq and \
                 TcpExtTCPACKSkippedPAWS count what it held back. Capture (`tcpdump -n 'host {} and port {}'`) \
                 to see who sends them.{ratelimit}{timestamps}",
                b,
                b.ip(),
                b.port()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> FlowId {
        FlowId {
            netns: 7,
            local: "203.0.113.2:8080".parse().unwrap(),
            remote: "198.51.100.2:40000".parse().unwrap(),
        }
    }

    /// The same connection seen from its other end, in another namespace.
    fn other_end() -> FlowId {
        FlowId { netns: 8, local: flow().remote, remote: flow().local }
    }

    /// Feeds per-interval rates (oow in, dupacks out, progress, suppressed by the limiter) every
    /// half second; returns the changes with the time they happened.
    fn replay(rules: Rules, rates: &[(u64, u64, u64, u64)]) -> (Detector, Vec<(f64, Change)>) {
        replay_ends(rules, rates, false)
    }

    /// [`replay`] with the other end local too, mirroring: it rejects what we send and sends
    /// what we reject. Returns this end's changes.
    fn replay_ends(rules: Rules, rates: &[(u64, u64, u64, u64)], both: bool) -> (Detector, Vec<(f64, Change)>) {
        let mut detector = Detector::new(rules, 1000.0);
        let (mut totals, mut mirrored) = (Totals::default(), Totals::default());
        let mut changes = Vec::new();
        for (i, (oow, dup, progress, limited)) in rates.iter().enumerate() {
            totals.oow_sequence += oow / 2;
            totals.oow_pure_ack += oow / 2;
            totals.dupacks_out += dup / 2;
            totals.progress_out += progress / 2;
            totals.limiter_suppressed += limited / 2;
            mirrored.oow_sequence += dup / 2;
            mirrored.oow_pure_ack += dup / 2;
            mirrored.dupacks_out += oow / 2;
            let at = 1000.0 + 0.5 * (i + 1) as f64;
            let flows = if both { vec![(flow(), totals), (other_end(), mirrored)] } else { vec![(flow(), totals)] };
            let mine = detector.observe(at, &flows).into_iter().filter(|c| match c {
                Change::Started(e) | Change::Ended(e) => e.flow == flow(),
            });
            changes.extend(mine.map(|c| (at, c)));
        }
        (detector, changes)
    }

    fn episodes_of(detector: &Detector, flow: FlowId) -> Vec<Episode> {
        detector.episodes().into_iter().filter(|e| e.flow == flow).collect()
    }

    const LOOP: (u64, u64, u64, u64) = (150_000, 150_000, 0, 0);
    const IDLE: (u64, u64, u64, u64) = (0, 0, 0, 0);

    #[test]
    fn a_loop_is_named_within_two_seconds_with_start_and_end() {
        let mut rates = vec![IDLE; 2];
        rates.extend([LOOP; 8]);
        rates.extend([IDLE; 4]);
        let (detector, changes) = replay_ends(Rules::default(), &rates, true);
        let Some((at, Change::Started(started))) = changes.first() else { panic!("{changes:?}") };
        assert_eq!(started.kind, Kind::AckLoop);
        assert_eq!(started.other_end_netns, Some(8));
        assert_eq!(started.started, 1001.0, "the first qualifying interval started at 1001.0");
        assert!(*at - started.started <= 1.0, "named {} s after the loop began", at - started.started);
        assert_eq!(episodes_of(&detector, other_end()).len(), 1, "one finding per end");
        let episodes = episodes_of(&detector, flow());
        assert_eq!(episodes.len(), 1);
        let e = &episodes[0];
        assert_eq!(e.ended, Some(1005.0));
        assert_eq!(e.totals.oow(), 8 * 75_000);
        assert!((e.rate(e.totals.dupacks_out) - 150_000.0).abs() < 1.0);
        assert_eq!(e.suppressed(), 0);
        assert!(matches!(changes.last(), Some((_, Change::Ended(_)))));
    }

    #[test]
    fn an_open_loop_has_no_end() {
        let (detector, _) = replay_ends(Rules::default(), &[LOOP; 6], true);
        let episodes = episodes_of(&detector, flow());
        assert_eq!(episodes.len(), 1);
        assert_eq!(episodes[0].ended, None);
        let sources = Sources::new(("raw_tracepoint", "raw kfree_skb"), ("fentry", "tcp_send_dupack"));
        let facts = NamespaceFacts { tcp_invalid_ratelimit_ms: Some(0), ..Default::default() };
        let f = finding(&episodes[0], "srv", Some("cli"), &facts, &sources);
        assert_eq!(f.kind, "ack_loop");
        assert!(f.summary.contains("Both ends are on this host: namespace cli"), "{}", f.summary);
        assert!(f.evidence.as_ref().unwrap()[1].starts_with("the other end (cli) rejected"), "{f:#?}");
        let facts = f.flow.as_ref().unwrap();
        assert_eq!(facts.ended, None);
        assert_eq!(facts.why, "sequence");
        assert!(f.summary.contains("198.51.100.2:40000 <-> 203.0.113.2:8080"), "{}", f.summary);
        assert!(f.summary.contains("namespace srv"), "{}", f.summary);
        assert!(f.advice.contains("tcp_invalid_ratelimit is 0") && f.advice.contains("tcp_timestamps=0"), "{}", f.advice);
        let json = serde_json::to_value(&f).unwrap();
        assert!(json["ended"].is_null() && json.as_object().unwrap().contains_key("ended"), "{json}");
        assert_eq!(json["oow_in_per_s"], 150_000.0);
        assert_eq!(
            json["sources"]["dupacks_out"],
            "the stack's answers to out-of-window segments, at tcp_send_dupack (fentry), per flow in a kernel map"
        );
        assert_eq!(json["sources"]["oow_in"], "drop reasons at raw kfree_skb (raw_tracepoint), per flow in a kernel map");
    }

    #[test]
    fn a_short_burst_or_a_stray_segment_is_no_loop() {
        let (detector, changes) = replay(Rules::default(), &[IDLE, LOOP, IDLE, (2, 2, 0, 0), IDLE, LOOP, IDLE]);
        assert!(changes.is_empty() && detector.episodes().is_empty(), "{changes:?}");
    }

    #[test]
    fn duplicate_acks_of_a_lossy_transfer_are_no_loop() {
        // Fast retransmit and SACK: many duplicate ACKs, a few spurious retransmissions out of
        // window, data moving all the time.
        let lossy = (20, 400, 8000, 0);
        let (detector, changes) = replay(Rules::default(), &[lossy; 20]);
        assert!(changes.is_empty() && detector.episodes().is_empty(), "{changes:?}");
        // Even matched rates are no loop while data moves.
        let (detector, _) = replay(Rules::default(), &[(400, 400, 8000, 0); 20]);
        assert!(detector.episodes().is_empty());
    }

    #[test]
    fn replayed_data_segments_answered_one_by_one_are_no_loop() {
        // A sender injecting stale data: every segment is out of window and answered (data is
        // never rate-limited), but no duplicate ACK comes back from the peer.
        let mut detector = Detector::new(Rules::default(), 1000.0);
        for i in 1..=8u64 {
            let totals = Totals { oow_timestamp: 50_000 * i, dupacks_out: 50_000 * i, ..Totals::default() };
            assert!(detector.observe(1000.0 + 0.5 * i as f64, &[(flow(), totals)]).is_empty());
        }
        assert!(detector.episodes().is_empty());
    }

    #[test]
    fn spoofed_acks_answered_twice_a_second_are_a_flood() {
        let flood = (200, 2, 0, 0);
        let (detector, changes) = replay(Rules::default(), &[flood; 8]);
        assert!(matches!(changes.first(), Some((_, Change::Started(e))) if e.kind == Kind::OutOfWindowFlood));
        let e = &detector.episodes()[0];
        assert_eq!(e.suppressed(), e.totals.oow() - e.totals.dupacks_out);
        let sources = Sources::new(("tracepoint", "skb:kfree_skb"), ("raw_tracepoint", "raw net_dev_queue"));
        let facts = NamespaceFacts { tcp_invalid_ratelimit_ms: Some(500), ..Default::default() };
        let f = finding(e, "root", None, &facts, &sources);
        assert_eq!(f.kind, "out_of_window_flood");
        assert!(f.advice.contains("tcp_invalid_ratelimit=500"), "{}", f.advice);
        assert!((f.flow.unwrap().dupacks_suppressed_per_s - 198.0).abs() < 1.0);
    }

    #[test]
    fn the_limiter_count_is_used_where_the_kernel_reports_it() {
        let rules = Rules { limiter_traced: true, ..Rules::default() };
        // 200 in, 2 answered, the limiter says it held back 198.
        let (detector, _) = replay(rules, &[(200, 2, 0, 198); 6]);
        let e = &detector.episodes()[0];
        assert_eq!(e.suppressed(), e.totals.limiter_suppressed);
        assert_eq!(e.kind, Kind::OutOfWindowFlood);
    }

    #[test]
    fn polls_in_a_burst_after_a_stall_are_judged_together() {
        let mut detector = Detector::new(Rules::default(), 1000.0);
        let mut totals = Totals::default();
        let mut changes = Vec::new();
        // Loop for 4 s, but the poller stalls for the first 1.5 s and then fires 3 times at
        // once, while the loop (off the CPU meanwhile) counts nothing new.
        let polls = [(1001.5, 75_000), (1001.501, 75_000), (1001.502, 75_000), (1002.0, 100_000)];
        let rest = (5..=8).map(|i| (1000.0 + 0.5 * i as f64, 25_000 * i as u64));
        for (at, count) in polls.into_iter().chain(rest) {
            totals.oow_sequence = count;
            totals.oow_pure_ack = count;
            totals.dupacks_out = count;
            changes.extend(detector.observe(at, &[(flow(), totals)]));
        }
        let e = &detector.episodes()[0];
        assert_eq!(e.started, 1000.0, "{changes:?}");
        assert_eq!(e.totals.oow(), 200_000);
    }

    #[test]
    fn a_flow_counted_afresh_after_eviction_is_not_a_negative_rate() {
        let earlier = Totals { oow_sequence: 500, dupacks_out: 500, ..Totals::default() };
        let now = Totals { oow_sequence: 3, dupacks_out: 3, ..Totals::default() };
        assert_eq!(now.since(&earlier), now);
    }

    #[test]
    fn why_is_the_check_that_rejected_most() {
        assert_eq!(Totals { oow_timestamp: 9, oow_sequence: 1, ..Totals::default() }.why(), "timestamps");
        assert_eq!(Totals { oow_ack: 3, ..Totals::default() }.why(), "ack");
    }

    #[test]
    fn one_end_answering_everything_is_an_unthrottled_flood_not_a_loop() {
        let (detector, changes) = replay(Rules::default(), &[LOOP; 6]);
        assert!(matches!(changes.first(), Some((_, Change::Started(e))) if e.kind == Kind::UnthrottledFlood));
        let e = &detector.episodes()[0];
        let facts = NamespaceFacts { tcp_invalid_ratelimit_ms: Some(0), ..Default::default() };
        let sources = Sources::new(("raw_tracepoint", "raw kfree_skb"), ("raw_tracepoint", "raw net_dev_queue"));
        let f = finding(e, "srv", None, &facts, &sources);
        assert_eq!((f.kind, f.variant), ("out_of_window_flood", "unthrottled"));
        assert_eq!(f.flow.as_ref().unwrap().why, "sequence");
        assert!(f.summary.contains("nothing shows that the segments answer ours"), "{}", f.summary);
        assert!(f.advice.contains("misbehaving or hostile sender"), "{}", f.advice);
        assert!(f.evidence.as_ref().unwrap()[1].contains("other end is not on this host"), "{f:#?}");
        assert!(f.evidence.as_ref().unwrap()[2].contains("round-trip time could not be read"), "{f:#?}");
        assert!(f.disproved_by.as_ref().unwrap().contains("round-trip time"), "{f:#?}");
    }

    /// One end only, 50 out-of-window segments/s in, each answered, with the connection's
    /// smoothed RTT at `srtt_us`: the detector's first verdict.
    fn one_end_at(srtt_us: u64) -> (Detector, Episode) {
        let mut detector = Detector::new(Rules::default(), 1000.0);
        for i in 1..=6u64 {
            let t = Totals { oow_sequence: 25 * i, oow_pure_ack: 25 * i, dupacks_out: 25 * i, srtt_us, ..Totals::default() };
            detector.observe(1000.0 + 0.5 * i as f64, &[(flow(), t)]);
        }
        let episode = detector.episodes()[0].clone();
        (detector, episode)
    }

    #[test]
    fn one_end_paced_at_one_segment_per_round_trip_is_a_loop_with_the_pace_as_evidence() {
        let (_, e) = one_end_at(20_000);
        assert_eq!(e.kind, Kind::AckLoopOneEnd);
        assert_eq!(e.other_end_netns, None);
        let f = finding(&e, "srv", None, &NamespaceFacts::default(), &Sources::new(("fentry", "x"), ("fentry", "y")));
        assert_eq!(f.kind, "ack_loop");
        let flow = f.flow.as_ref().unwrap();
        assert_eq!(flow.srtt_us, Some(20_000));
        assert_eq!(flow.segments_per_round_trip, Some(1.0));
        let evidence = f.evidence.as_ref().unwrap();
        assert!(evidence[1].contains("not on this host"), "{evidence:?}");
        assert!(evidence[2].contains("1.00 per round trip") && evidence[2].contains("20.0 ms"), "{evidence:?}");
        assert!(f.summary.contains("is not on this host") && f.summary.contains("one per round trip"), "{}", f.summary);
        assert!(f.disproved_by.as_ref().unwrap().contains("keeping their pace"), "{f:#?}");
    }

    #[test]
    fn one_end_at_any_other_pace_is_a_flood_and_says_its_pace() {
        for srtt_us in [80_000, 5_000] {
            let (_, e) = one_end_at(srtt_us);
            assert_eq!(e.kind, Kind::UnthrottledFlood, "srtt {srtt_us} µs");
            let f = finding(&e, "srv", None, &NamespaceFacts::default(), &Sources::new(("fentry", "x"), ("fentry", "y")));
            assert!(f.evidence.as_ref().unwrap()[2].contains("not one per round trip"), "{f:#?}");
        }
    }

    #[test]
    fn a_proven_loop_survives_an_interval_where_its_other_end_lagged() {
        let mut detector = Detector::new(Rules::default(), 1000.0);
        let loop_at = |i: u64| Totals { oow_sequence: 75_000 * i, oow_pure_ack: 75_000 * i, dupacks_out: 75_000 * i, ..Totals::default() };
        for i in 1..=10u64 {
            // For polls 5 to 7 (1.5 s) the other end counted nothing new, then resumed.
            let other = loop_at(i.min(4) + i.saturating_sub(7));
            detector.observe(1000.0 + 0.5 * i as f64, &[(flow(), loop_at(i)), (other_end(), other)]);
        }
        let mine = episodes_of(&detector, flow());
        assert_eq!(mine.len(), 1, "{mine:#?}");
        assert_eq!((mine[0].kind, mine[0].totals.oow()), (Kind::AckLoop, 10 * 75_000), "{mine:#?}");
    }

    #[test]
    fn another_end_that_does_not_answer_in_kind_makes_no_loop() {
        // The same 4-tuple the other way round in another namespace, but quiet: no loop.
        let mut detector = Detector::new(Rules::default(), 1000.0);
        for i in 1..=6u64 {
            let ours = Totals { oow_sequence: 75_000 * i, oow_pure_ack: 75_000 * i, dupacks_out: 75_000 * i, ..Totals::default() };
            detector.observe(1000.0 + 0.5 * i as f64, &[(flow(), ours), (other_end(), Totals::default())]);
        }
        let kinds: Vec<Kind> = episodes_of(&detector, flow()).iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [Kind::UnthrottledFlood]);
    }

    #[test]
    fn counts_the_kernel_could_not_place_join_the_one_namespace_holding_the_flow() {
        // 6.1 loses the namespace of segments dropped from a socket's backlog: some of the
        // other end's counts come under namespace 0, listed first. Both ends are still a loop.
        let unplaced = FlowId { netns: UNKNOWN_NETNS, ..other_end() };
        let mut detector = Detector::new(Rules::default(), 1000.0);
        for i in 1..=6u64 {
            let ends = Totals { oow_sequence: 75_000 * i, oow_pure_ack: 75_000 * i, dupacks_out: 75_000 * i, ..Totals::default() };
            let stray = Totals { oow_sequence: 100 * i, oow_pure_ack: 100 * i, ..Totals::default() };
            let mut other = ends;
            other.oow_sequence -= stray.oow_sequence;
            other.oow_pure_ack -= stray.oow_pure_ack;
            detector.observe(1000.0 + 0.5 * i as f64, &[(unplaced, stray), (flow(), ends), (other_end(), other)]);
        }
        for end in [flow(), other_end()] {
            let episodes = episodes_of(&detector, end);
            assert_eq!(episodes.len(), 1, "{episodes:#?}");
            assert_eq!(episodes[0].kind, Kind::AckLoop, "{episodes:#?}");
            assert_eq!(episodes[0].totals.oow(), 6 * 75_000, "the unplaced counts are the other end's");
        }
        assert!(episodes_of(&detector, unplaced).is_empty());
    }

    #[test]
    fn unplaced_counts_of_a_tuple_several_namespaces_hold_stay_apart() {
        let twin = FlowId { netns: 9, ..flow() };
        let unplaced = FlowId { netns: UNKNOWN_NETNS, ..flow() };
        let some = Totals { oow_sequence: 5, ..Totals::default() };
        let flows = placed(&[(unplaced, some), (flow(), some), (twin, some)]);
        assert_eq!(flows.len(), 3);
        assert!(flows.iter().all(|(_, t)| t.oow() == 5), "{flows:?}");
    }
}
