//! The SYN funnel per peer and listener: SYNs in → SYN-ACKs out → handshakes completed, and
//! every drop with its reason. A peer whose SYNs get no SYN-ACK, or whose handshakes never
//! complete, is an `unanswered_syns` finding, with the kernel's drop reason where it gave one
//! and the namespace's counters where it gave none (a SYN dropped because the accept queue is
//! full, for one, is freed without a drop reason; only `TcpExtListenOverflows` counts it).
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{IpAddr, SocketAddr},
};

use netdiag_common::{FunnelKey, PeerKey, PeerStats, SynKey, funnel_stage};
use serde::Serialize;

use super::{Finding, nat_clocks::ClockFacts};
use crate::{clock::Clock, counters::Counters, events::ip_from, hooks::ReasonTable};

const TCP_SYN_RECV: u8 = 3;
const TCP_LISTEN: u8 = 10;
const TCP_NEW_SYN_RECV: u8 = 12;

/// Drop reasons that reject a SYN itself: no SYN-ACK follows.
const SYN_REASONS: &[&str] = &["TCP_RFC7323_TW_PAWS", "TCP_INVALID_SYN"];
/// Drop reasons the kernel gives any segment, SYNs among them: counted in the funnel where the
/// socket was a listener or a request (only SYNs and handshake ACKs reach those), elsewhere as
/// far as the drop samples show SYNs.
const ANY_SEGMENT_REASONS: &[&str] = &["TCP_CSUM", "TCP_FLAGS", "SOCKET_BACKLOG", "NO_SOCKET"];
/// Drop reasons that reject the handshake's final ACK: the SYN was answered, the connection
/// never completes.
const ACK_REASONS: &[&str] = &["TCP_LISTEN_OVERFLOW", "TCP_RFC7323_TSECR"];
/// A SYN on a synchronized connection (RFC 5961 4.2): dropped with this reason, and answered
/// with a challenge ACK unless the per-socket limit (tcp_invalid_ratelimit) holds it back.
const CHALLENGED: &str = "TCP_INVALID_SYN";
/// Challenge ACKs the namespace sent, SYNs' and in-window RSTs' alike: the SYNs' share is at
/// most this.
const CHALLENGE_ACKS_SENT: &str = "TcpExtTCPChallengeACK";
/// A SYN on a synchronized connection whose TSval is older than the connection's: kernels that
/// check PAWS before the SYN (6.1) drop it with this reason and answer it with a duplicate ACK,
/// as any stale segment, unless the limiter holds it back.
const PAWS_ON_CONNECTION: &str = "TCP_RFC7323_PAWS";
/// The namespace's PAWS rejections on connections, and those the limiter left unanswered: the
/// duplicate ACKs sent for them are at most the difference.
const PAWS_REJECTED: &str = "TcpExtPAWSEstab";
const PAWS_UNANSWERED: &str = "TcpExtTCPACKSkippedPAWS";

/// Whether a drop reason ends SYNs without a SYN-ACK.
fn ends_syns(reason: &str) -> bool {
    SYN_REASONS.contains(&reason) || ANY_SEGMENT_REASONS.contains(&reason)
}

/// A counter the kernel raises for SYNs it may drop without a drop reason.
struct SilentCause {
    counter: &'static str,
    variant: &'static str,
    words: &'static str,
    /// The drop reason the kernel gives for some of the same events (or for all of them on
    /// newer kernels): what it explains is not counted twice.
    reason: Option<&'static str>,
}

const SILENT_CAUSES: &[SilentCause] = &[
    SilentCause {
        counter: "TcpExtListenOverflows",
        variant: "listen_overflow",
        words: "listen queue overflow: the accept queue was full, and the kernel dropped these SYNs without a \
                drop reason (counted from TcpExtListenOverflows)",
        reason: Some("TCP_LISTEN_OVERFLOW"),
    },
    SilentCause {
        counter: "TcpExtTCPReqQFullDrop",
        variant: "syn_queue_full",
        words: "SYN queue full and SYN cookies off: the kernel dropped these SYNs without a drop reason \
                (counted from TcpExtTCPReqQFullDrop)",
        reason: None,
    },
    // Kernels before 6.16 have no drop reason for PAWS against TIME_WAIT.
    SilentCause {
        counter: "TcpExtPAWSTimewait",
        variant: "time_wait_paws",
        words: "PAWS against TIME_WAIT (counted from TcpExtPAWSTimewait: this kernel gives these drops no \
                drop reason)",
        reason: Some("TCP_RFC7323_TW_PAWS"),
    },
    // The drop reasons below are watched by default; the counters account for them where a
    // kernel lacks the reason or the drops were not sampled.
    SilentCause {
        counter: "TcpInCsumErrors",
        variant: "bad_checksum",
        words: "bad TCP checksum: the segments were corrupted on the way, or forged (counted from \
                TcpInCsumErrors)",
        reason: Some("TCP_CSUM"),
    },
    SilentCause {
        counter: "TcpExtTCPSYNChallenge",
        variant: "invalid_syn",
        words: "SYN on a connection this host holds open, answered with a challenge ACK or held back by \
                the rate limit (counted from TcpExtTCPSYNChallenge)",
        reason: Some("TCP_INVALID_SYN"),
    },
    // Before 6.16 the kernel counted PAWS against TIME_WAIT in PAWSEstab; a SYN has no other
    // PAWS check to fail there (tcp_tw_recycle's went in 4.12).
    SilentCause {
        counter: "TcpExtPAWSEstab",
        variant: "time_wait_paws",
        words: "PAWS against TIME_WAIT (counted from TcpExtPAWSEstab, where kernels before 6.16 count it, \
                without a drop reason)",
        reason: Some("TCP_RFC7323_PAWS"),
    },
];

/// One peer's funnel on one listening port. `syns` counts every SYN that arrived,
/// retransmissions included; `synacks` every SYN-ACK that left, retransmissions included.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Funnel {
    pub syns: u64,
    pub synacks: u64,
    pub synack_retransmits: u64,
    pub handshakes: u64,
    /// SYNs on a connection this host holds open (`TCP_INVALID_SYN`) answered by a challenge
    /// ACK (RFC 5961): at most the namespace's `TcpExtTCPChallengeACK` rise, shared out over
    /// its rows in order.
    pub challenge_acks: u64,
    /// SYNs on a connection this host holds open that its PAWS check rejected (drop samples of
    /// `TCP_RFC7323_PAWS` that were SYNs, on kernels that check PAWS first) answered by a
    /// duplicate ACK: at most the namespace's `TcpExtPAWSEstab` rise less
    /// `TcpExtTCPACKSkippedPAWS`, shared out over its rows in order. Only where SYNs are counted
    /// as they arrive: at the listener they were never counted.
    pub paws_dupacks: u64,
    /// SYNs that got no answer: `syns - synacks - challenge_acks - paws_dupacks`. A SYN resent for a request
    /// the server already holds is answered by a retransmitted SYN-ACK, so retransmissions
    /// count as answers; those the timer sends unasked can only make this smaller, never
    /// invent one.
    pub unanswered: u64,
    /// Drops by kernel reason name on this peer and port, handshake-related reasons only.
    pub drops: BTreeMap<String, u64>,
}

/// A funnel row of the report.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct FunnelRow {
    pub peer: String,
    pub netns: String,
    pub port: u16,
    /// The listening sockets on that port in that namespace at the end of the session.
    pub listeners: Vec<String>,
    #[serde(flatten)]
    pub funnel: Funnel,
    /// The container, pod or host behind `netns` (set by the session).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<crate::workload::Workload>,
    #[serde(skip)]
    pub first_ns: u64,
    #[serde(skip)]
    pub last_ns: u64,
    #[serde(skip)]
    netns_inode: u32,
}

impl FunnelRow {
    /// Inode of the namespace.
    pub fn inode(&self) -> u32 {
        self.netns_inode
    }
}

/// A listening socket: where, its accept queue now and its backlog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerInfo {
    pub local: SocketAddr,
    pub queued: u32,
    pub backlog: u32,
}

pub struct Input<'a> {
    /// The tracepoint programs' funnel counts.
    pub funnel: &'a [(FunnelKey, PeerStats)],
    /// SYNs counted by an fentry/kprobe `conn_request` where one serves instead.
    pub syns_seen: &'a [(SynKey, PeerStats)],
    pub drops: &'a [(PeerKey, PeerStats)],
    pub reasons: &'a ReasonTable,
    /// Listening sockets per namespace inode, read at the end of the session.
    pub listeners: &'a HashMap<u32, Vec<ListenerInfo>>,
    /// Counter deltas of the session per namespace inode.
    pub counters: &'a HashMap<u32, Counters>,
    pub netns_names: &'a HashMap<u32, String>,
    /// SYNs are counted where they reach a listener (`tcp_conn_request` hooked), not as they
    /// arrive: those a TIME_WAIT socket rejected never get there and are added from the drops.
    pub syns_at_listener: bool,
    /// Sampled drops that were SYNs, by peer, namespace inode, local port and reason name.
    pub sampled_syn_drops: &'a HashMap<(IpAddr, u32, u16, String), u64>,
}

/// Whether a drop belongs to the handshake, and so to the funnel.
fn handshake_drop(reason: &str, sk_state: u8) -> bool {
    let at_listener = matches!(sk_state, TCP_LISTEN | TCP_NEW_SYN_RECV | TCP_SYN_RECV);
    SYN_REASONS.contains(&reason)
        || ACK_REASONS.contains(&reason)
        || ((reason == "TCP_RFC7323_PAWS" || ANY_SEGMENT_REASONS.contains(&reason)) && at_listener)
}

/// The funnel of every peer on every port that has a listener (or completed a handshake):
/// SYNs and SYN-ACKs a namespace merely forwards (a router, a NAT) are left out that way.
pub fn rows(input: &Input) -> Vec<FunnelRow> {
    let mut rows: BTreeMap<(IpAddr, u32, u16), FunnelRow> = BTreeMap::new();
    let names = input.netns_names;
    for (key, stats) in input.funnel {
        let Some(f) = row_of(&mut rows, names, key.family, &key.addr, key.netns, key.port, stats) else { continue };
        match key.stage {
            funnel_stage::SYN_IN => f.syns += stats.count,
            funnel_stage::SYNACK_OUT => f.synacks += stats.count,
            funnel_stage::SYNACK_RETRANSMIT => f.synack_retransmits += stats.count,
            funnel_stage::HANDSHAKE_DONE => f.handshakes += stats.count,
            _ => {}
        }
    }
    for (key, stats) in input.syns_seen {
        if let Some(f) = row_of(&mut rows, names, key.family, &key.addr, key.netns, key.port, stats) {
            f.syns += stats.count;
        }
    }
    for (key, stats) in input.drops {
        let reason = input.reasons.name(key.reason as u32);
        if !handshake_drop(&reason, key.sk_state) {
            continue;
        }
        if let Some(f) = row_of(&mut rows, names, key.family, &key.addr, key.netns, key.local_port, stats) {
            *f.drops.entry(reason).or_default() += stats.count;
        }
    }
    // SYNs among drops of any segment on connections (a replayed SYN with a bad checksum):
    // as many as were sampled, if more than the listener states counted.
    for ((ip, netns, port, reason), sampled) in input.sampled_syn_drops {
        if !ANY_SEGMENT_REASONS.contains(&reason.as_str()) {
            continue;
        }
        if let Some(r) = rows.get_mut(&(*ip, *netns, *port)) {
            let counted = r.funnel.drops.entry(reason.clone()).or_default();
            *counted = (*counted).max(*sampled);
        }
    }
    let counter = |c: &Counters, name: &str| c.get(name).copied().unwrap_or(0);
    let mut challenge_budget: HashMap<u32, u64> =
        input.counters.iter().map(|(inode, c)| (*inode, counter(c, CHALLENGE_ACKS_SENT))).collect();
    let mut paws_budget: HashMap<u32, u64> = input
        .counters
        .iter()
        .map(|(inode, c)| (*inode, counter(c, PAWS_REJECTED).saturating_sub(counter(c, PAWS_UNANSWERED))))
        .collect();
    rows.into_iter()
        .filter_map(|((ip, _, _), mut r)| {
            let listeners: Vec<String> = input
                .listeners
                .get(&r.netns_inode)
                .into_iter()
                .flatten()
                .filter(|l| l.local.port() == r.port)
                .map(|l| l.local.to_string())
                .collect();
            if listeners.is_empty() && r.funnel.handshakes == 0 {
                return None;
            }
            r.listeners = listeners;
            if input.syns_at_listener {
                r.funnel.syns += SYN_REASONS.iter().map(|n| r.funnel.drops.get(*n).copied().unwrap_or(0)).sum::<u64>();
            }
            let budget = challenge_budget.entry(r.netns_inode).or_default();
            let challenged = r.funnel.drops.get(CHALLENGED).copied().unwrap_or(0);
            r.funnel.challenge_acks = challenged.min(*budget);
            *budget -= r.funnel.challenge_acks;
            if !input.syns_at_listener {
                let stale = input.sampled_syn_drops.get(&(ip, r.netns_inode, r.port, PAWS_ON_CONNECTION.to_string()));
                let budget = paws_budget.entry(r.netns_inode).or_default();
                r.funnel.paws_dupacks = stale.copied().unwrap_or(0).min(*budget);
                *budget -= r.funnel.paws_dupacks;
            }
            let answered = r.funnel.synacks + r.funnel.challenge_acks + r.funnel.paws_dupacks;
            r.funnel.unanswered = r.funnel.syns.saturating_sub(answered);
            Some(r)
        })
        .collect()
}

/// The funnel of one peer, namespace and port, created on first use; its time span widened
/// to `stats`'.
fn row_of<'a>(
    rows: &'a mut BTreeMap<(IpAddr, u32, u16), FunnelRow>,
    names: &HashMap<u32, String>,
    family: u8,
    addr: &[u8; 16],
    netns: u32,
    port: u16,
    stats: &PeerStats,
) -> Option<&'a mut Funnel> {
    let ip = ip_from(family, addr)?;
    let r = rows.entry((ip, netns, port)).or_insert_with(|| FunnelRow {
        peer: ip.to_string(),
        netns: names.get(&netns).cloned().unwrap_or_else(|| format!("inode:{netns}")),
        port,
        listeners: Vec::new(),
        funnel: Funnel::default(),
        workload: None,
        first_ns: 0,
        last_ns: 0,
        netns_inode: netns,
    });
    if stats.first_ns != 0 && (r.first_ns == 0 || stats.first_ns < r.first_ns) {
        r.first_ns = stats.first_ns;
    }
    r.last_ns = r.last_ns.max(stats.last_ns);
    Some(&mut r.funnel)
}

/// Why the SYNs of one row were not answered or the handshakes not completed.
struct Cause {
    variant: &'static str,
    words: String,
}

fn cause_of(reason: &str) -> Cause {
    let (variant, words) = match reason {
        "TCP_RFC7323_TW_PAWS" => ("time_wait_paws", "PAWS against TIME_WAIT"),
        "TCP_INVALID_SYN" => ("invalid_syn", "invalid SYN (a SYN where the connection's state allows none)"),
        "TCP_LISTEN_OVERFLOW" => {
            ("listen_overflow", "listen queue overflow: the accept queue was full when the handshake's last ACK came")
        }
        "TCP_RFC7323_TSECR" => ("handshake_tsecr", "the handshake's ACK echoed a timestamp this host never sent"),
        "TCP_RFC7323_PAWS" => ("handshake_paws", "PAWS during the handshake"),
        "TCP_CSUM" => ("bad_checksum", "bad TCP checksum (corrupted on the way, or forged)"),
        "TCP_FLAGS" => ("invalid_flags", "a flag combination a listener refuses (SYN with FIN)"),
        "SOCKET_BACKLOG" => ("socket_backlog", "the socket's backlog was full (its owner held it too long)"),
        "NO_SOCKET" => ("no_socket", "no socket for the address and port (answered with an RST)"),
        other => {
            return SILENT_CAUSES
                .iter()
                .find(|cause| cause.counter == other)
                .map(|cause| Cause { variant: cause.variant, words: cause.words.to_string() })
                .unwrap_or(Cause { variant: "unknown", words: other.to_string() });
        }
    };
    Cause { variant, words: words.to_string() }
}

/// One `unanswered_syns` finding per peer and listener whose SYNs went unanswered or whose
/// handshakes were dropped. Unanswered SYNs no drop reason explains are matched, per namespace,
/// with the counters that rose for silent drops.
pub fn findings(
    input: &Input,
    rows: &[FunnelRow],
    nat_peers: &BTreeSet<(String, String)>,
    clock: &Clock,
    duration_s: f64,
    facts: &dyn Fn(u32) -> ClockFacts,
) -> Vec<Finding> {
    // Per namespace: silent drops the counters show, less what drop reasons already explain.
    let mut silent: HashMap<(u32, &str), u64> = HashMap::new();
    for (&inode, counters) in input.counters {
        for cause in SILENT_CAUSES {
            let rose = counters.get(cause.counter).copied().unwrap_or(0);
            let with_reason: u64 = input
                .drops
                .iter()
                .filter(|(key, _)| key.netns == inode && Some(input.reasons.name(key.reason as u32).as_str()) == cause.reason)
                .map(|(_, stats)| stats.count)
                .sum();
            silent.insert((inode, cause.counter), rose.saturating_sub(with_reason));
        }
    }
    let mut order: Vec<&FunnelRow> = rows.iter().collect();
    order.sort_by_key(|r| std::cmp::Reverse(r.funnel.unanswered));
    let mut found = Vec::new();
    for r in order {
        let f = &r.funnel;
        // SYNs answered by a challenge ACK are answered: only the rest of their drops explain
        // unanswered SYNs.
        let syn_dropped: u64 =
            f.drops.iter().filter(|(n, _)| ends_syns(n)).map(|(_, c)| c).sum::<u64>() - f.challenge_acks;
        let ack_dropped: u64 = f.drops.iter().filter(|(n, _)| !ends_syns(n)).map(|(_, c)| c).sum();
        if f.unanswered == 0 && ack_dropped == 0 {
            continue;
        }
        let mut drops = f.drops.clone();
        if f.challenge_acks > 0 {
            drops.insert(CHALLENGE_ACKS_SENT.to_string(), f.challenge_acks);
        }
        let mut unexplained = f.unanswered.saturating_sub(syn_dropped);
        for cause in SILENT_CAUSES {
            let left = silent.entry((r.netns_inode, cause.counter)).or_default();
            let taken = unexplained.min(*left);
            if taken > 0 {
                drops.insert(cause.counter.to_string(), taken);
                *left -= taken;
                unexplained -= taken;
            }
        }
        // The cause is what explains most of the SYNs left without an answer.
        let main = drops
            .iter()
            .filter(|(n, _)| n.as_str() != CHALLENGE_ACKS_SENT)
            .map(|(n, c)| (n, if n == CHALLENGED { c - f.challenge_acks } else { *c }))
            .filter(|(_, c)| *c > 0)
            .max_by_key(|(_, c)| *c)
            .map(|(n, _)| n.clone());
        let cause = main.as_deref().map(cause_of).unwrap_or(Cause {
            variant: "unknown",
            words: "no drop reason and no counter explains it".to_string(),
        });
        let nat = nat_peers.contains(&(r.peer.clone(), r.netns.clone()));
        let count = if f.unanswered > 0 { f.unanswered } else { ack_dropped };
        let rate = if duration_s > 0.0 { count as f64 / duration_s } else { 0.0 };
        let listener = input.listeners.get(&r.netns_inode).and_then(|all| all.iter().find(|l| l.local.port() == r.port));
        found.push(Finding {
            kind: "unanswered_syns",
            variant: cause.variant,
            peer: r.peer.clone(),
            netns: r.netns.clone(),
            local: r.listeners.clone(),
            count,
            rate_per_s: (rate * 1000.0).round() / 1000.0,
            first_seen: clock.rfc3339(r.first_ns),
            last_seen: clock.rfc3339(r.last_ns),
            summary: summary(r, &cause, nat, unexplained),
            advice: advice(r, cause.variant, listener, nat, &facts(r.netns_inode)),
            listener_port: Some(r.port),
            funnel: Some(f.clone()),
            reason: Some(cause.words.clone()),
            evidence: Some(evidence(r, &drops, unexplained)),
            disproved_by: Some(if cause.variant == "unknown" {
                "a drop reason netdiag does not watch (`--reason NAME`) or a counter rising for these SYNs, or \
                 SYN-ACKs for them leaving this host (capture)"
                    .to_string()
            } else {
                format!(
                    "SYN-ACKs to {} for these SYNs leaving this host (capture), or the drop reasons and counters \
                     named not rising",
                    r.peer
                )
            }),
            drops: Some(drops),
            ..Finding::default()
        });
    }
    found
}

/// The facts an `unanswered_syns` finding rests on, in words.
fn evidence(r: &FunnelRow, drops: &BTreeMap<String, u64>, unexplained: u64) -> Vec<String> {
    let f = &r.funnel;
    let paws_dupacks =
        if f.paws_dupacks > 0 { format!(", {} after PAWS", many(f.paws_dupacks, "duplicate ACK")) } else { String::new() };
    let mut facts = vec![format!(
        "SYN funnel on :{} (kernel programs): {} in, {} out, {}{paws_dupacks}, {}",
        r.port,
        many(f.syns, "SYN"),
        many(f.synacks, "SYN-ACK"),
        many(f.challenge_acks, "challenge ACK"),
        many(f.handshakes, "handshake")
    )];
    for (name, n) in drops {
        let what = if name.starts_with("Tcp") { "namespace counter" } else { "kernel drop reason" };
        facts.push(format!("{what} {name}: {n}"));
    }
    if unexplained > 0 {
        facts.push(format!("{unexplained} SYNs with no answer, drop reason or counter that accounts for them"));
    }
    facts
}

fn summary(r: &FunnelRow, cause: &Cause, nat: bool, unexplained: u64) -> String {
    let f = &r.funnel;
    let nat = if nat { "; this address hides hosts with different timestamp clocks (NAT)" } else { "" };
    let lead = if f.unanswered > 0 {
        format!("SYNs from {} to :{} dropped: {}{nat}.", r.peer, r.port, cause.words)
    } else {
        format!("Handshakes from {} to :{} not completed: {}{nat}.", r.peer, r.port, cause.words)
    };
    let unexplained = if unexplained > 0 {
        format!(" {unexplained} of the unanswered SYNs have no drop reason and no counter that explains them.")
    } else {
        String::new()
    };
    let challenged = if f.challenge_acks > 0 {
        format!(
            " {} SYNs on connections this host holds open were answered with a challenge ACK (RFC 5961; \
             TCP_INVALID_SYN drops, TcpExtTCPChallengeACK) and are not counted as unanswered.",
            f.challenge_acks
        )
    } else {
        String::new()
    };
    let stale = if f.paws_dupacks > 0 {
        format!(
            " {} SYNs on connections this host holds open carried an older timestamp than the connection's and \
             were answered with a duplicate ACK (PAWS checked first; TCP_RFC7323_PAWS drops, TcpExtPAWSEstab), \
             not counted as unanswered.",
            f.paws_dupacks
        )
    } else {
        String::new()
    };
    format!(
        "{lead} {} of {} got no answer; {} sent ({} retransmitted) and {} completed.{challenged}{stale}{unexplained} \
         To {} the server looks dead or slow.",
        f.unanswered,
        many(f.syns, "SYN"),
        many(f.synacks, "SYN-ACK"),
        f.synack_retransmits,
        many(f.handshakes, "handshake"),
        r.peer
    )
}

/// `n` and the noun, plural but for one.
fn many(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

fn advice(r: &FunnelRow, variant: &str, listener: Option<&ListenerInfo>, nat: bool, facts: &ClockFacts) -> String {
    let peer = &r.peer;
    let port = r.port;
    match variant {
        "time_wait_paws" => {
            let recycle = match facts.tcp_tw_recycle {
                Some(1) => " net.ipv4.tcp_tw_recycle=1 here: set it to 0.".to_string(),
                Some(_) => String::new(),
                None => format!(" tcp_tw_recycle does not exist on this kernel ({}; removed in 4.12).", facts.release),
            };
            let nat = if nat {
                format!(" {peer} is a NAT: see the nat_timestamp_clocks finding.")
            } else {
                String::new()
            };
            format!(
                "This host closed connections from {peer} first and holds their 4-tuples in TIME_WAIT; a new SYN \
                 on one of them must carry a newer timestamp than the last connection (RFC 7323 PAWS), which \
                 another host behind the same address does not. Let clients close first or keep connections \
                 alive so the server holds no TIME_WAIT, or have the NAT allocate source ports at random. \
                 net.ipv4.tcp_timestamps=0 on the server stops it at the cost of RTT measurement and \
                 wrapped-sequence protection.{recycle}{nat}"
            )
        }
        "listen_overflow" => {
            let queue = listener
                .map(|l| format!(" Its accept queue holds {} of {} now.", l.queued, l.backlog + 1))
                .unwrap_or_default();
            format!(
                "The application listening on :{port} does not accept() connections fast enough (or at all).{queue} \
                 Make it accept faster, raise its listen() backlog and net.core.somaxconn (`ss -ltn` shows Recv-Q \
                 against Send-Q). net.ipv4.tcp_abort_on_overflow=1 makes clients fail at once instead of retrying."
            )
        }
        "syn_queue_full" => format!(
            "The SYN queue of :{port} is full: raise the listen() backlog and net.ipv4.tcp_max_syn_backlog, \
             enable SYN cookies (net.ipv4.tcp_syncookies=1), and check whether {peer} floods SYNs."
        ),
        "invalid_syn" => format!(
            "{peer} sends SYNs on connections that are already synchronized (a middlebox replaying SYNs, or a \
             client reusing a 4-tuple this host still holds open). Capture: `tcpdump -n 'host {peer} and port {port}'`."
        ),
        "bad_checksum" => format!(
            "The kernel dropped these SYNs from {peer} because their TCP checksum was wrong \
             (TcpInCsumErrors): a link, NIC or middlebox corrupting packets, or forged or replayed SYNs \
             with a broken checksum. Compare `ip -s link` error counts on the path and capture: \
             `tcpdump -vv -n 'host {peer} and port {port}'` shows `incorrect` checksums."
        ),
        "invalid_flags" => format!(
            "{peer} sends SYNs with flags no handshake uses (SYN with FIN): a scanner or a broken stack. \
             Capture: `tcpdump -n 'host {peer} and port {port}'`."
        ),
        "socket_backlog" => format!(
            "Segments for :{port} found their socket's backlog full: the application held the socket lock \
             too long. Check the process serving :{port} for stalls."
        ),
        "no_socket" => format!(
            "No socket matched the SYNs' destination (answered with an RST): the listener on :{port} is \
             bound to another address, or was not there at the time."
        ),
        "handshake_tsecr" | "handshake_paws" => format!(
            "A device between {peer} and this host rewrites TCP timestamps, or several hosts share the address \
             and 4-tuple. Compare the SYN-ACK's TSval with the final ACK's TSecr in a capture on both sides."
        ),
        _ => format!(
            "Nothing the kernel reported accounts for these SYNs: no drop reason netdiag watches, no counter, \
             no answer. They may end where netdiag does not look; candidates to check, not findings: a netfilter \
             rule (`nft list ruleset`), the reverse-path filter (net.ipv4.conf.*.rp_filter), a drop reason \
             netdiag can be told to watch (`--reason NAME`). Capture what leaves: \
             `tcpdump -ni any 'host {peer} and port {port} and tcp[tcpflags] & tcp-syn != 0'`."
        ),
    }
}

#[cfg(test)]
mod tests {
    use netdiag_common::FAMILY_IPV4;

    use super::*;

    const NS: u32 = 42;

    fn addr(last: u8) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[198, 51, 100, last]);
        a
    }

    fn stage(last: u8, port: u16, stage: u8, count: u64) -> (FunnelKey, PeerStats) {
        let key = FunnelKey { addr: addr(last), netns: NS, port, family: FAMILY_IPV4, stage };
        (key, PeerStats { count, first_ns: 1_000_000_000, last_ns: 2_000_000_000, ..Default::default() })
    }

    fn drop(last: u8, port: u16, reason: u16, sk_state: u8, count: u64) -> (PeerKey, PeerStats) {
        let key = PeerKey { addr: addr(last), netns: NS, reason, family: FAMILY_IPV4, sk_state, local_port: port, _pad: [0; 2] };
        (key, PeerStats { count, first_ns: 1, last_ns: 1, ..Default::default() })
    }

    fn listener(port: u16) -> ListenerInfo {
        ListenerInfo { local: SocketAddr::new([198, 51, 100, 1].into(), port), queued: 1, backlog: 0 }
    }

    fn reasons() -> ReasonTable {
        ReasonTable::from_symbols(&[
            (38, "TCP_RFC7323_TW_PAWS".into()),
            (40, "TCP_LISTEN_OVERFLOW".into()),
            (46, "TCP_INVALID_SYN".into()),
            (5, "TCP_CSUM".into()),
            (36, "TCP_RFC7323_PAWS".into()),
            (2, "NO_SOCKET".into()),
            (12, "TCP_FLAGS".into()),
            (18, "SOCKET_BACKLOG".into()),
        ])
    }

    fn run(
        funnel: &[(FunnelKey, PeerStats)],
        drops: &[(PeerKey, PeerStats)],
        counters: Counters,
        nat: bool,
    ) -> (Vec<FunnelRow>, Vec<Finding>) {
        run_with(funnel, &[], drops, counters, nat)
    }

    fn run_with(
        funnel: &[(FunnelKey, PeerStats)],
        syns_seen: &[(SynKey, PeerStats)],
        drops: &[(PeerKey, PeerStats)],
        counters: Counters,
        nat: bool,
    ) -> (Vec<FunnelRow>, Vec<Finding>) {
        run_sampled(funnel, syns_seen, drops, counters, nat, HashMap::new())
    }

    fn run_sampled(
        funnel: &[(FunnelKey, PeerStats)],
        syns_seen: &[(SynKey, PeerStats)],
        drops: &[(PeerKey, PeerStats)],
        counters: Counters,
        nat: bool,
        sampled_syn_drops: HashMap<(IpAddr, u32, u16, String), u64>,
    ) -> (Vec<FunnelRow>, Vec<Finding>) {
        let reasons = reasons();
        let listeners = HashMap::from([(NS, vec![listener(443), listener(8443)])]);
        let counters = HashMap::from([(NS, counters)]);
        let names = HashMap::from([(NS, "srv".to_string())]);
        let input = Input {
            funnel,
            syns_seen,
            drops,
            reasons: &reasons,
            listeners: &listeners,
            counters: &counters,
            netns_names: &names,
            syns_at_listener: !syns_seen.is_empty(),
            sampled_syn_drops: &sampled_syn_drops,
        };
        let rows = rows(&input);
        let nat_peers: BTreeSet<(String, String)> =
            if nat { BTreeSet::from([("198.51.100.7".to_string(), "srv".to_string())]) } else { BTreeSet::new() };
        let facts = ClockFacts { release: "6.18.0".into(), tcp_timestamps: Some(1), tcp_tw_recycle: None };
        let found = findings(&input, &rows, &nat_peers, &Clock::now(), 10.0, &|_| facts.clone());
        (rows, found)
    }

    #[test]
    fn syns_dropped_by_paws_against_time_wait_read_as_the_seed_incident() {
        let funnel = [
            stage(7, 443, funnel_stage::SYN_IN, 5),
            stage(7, 443, funnel_stage::SYNACK_OUT, 2),
            stage(7, 443, funnel_stage::HANDSHAKE_DONE, 2),
        ];
        let drops = [drop(7, 443, 38, 6, 3)];
        let (rows, found) = run(&funnel, &drops, Counters::from([("TcpExtPAWSTimewait".into(), 3)]), true);
        assert_eq!(rows.len(), 1);
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!((f.kind, f.variant, f.count), ("unanswered_syns", "time_wait_paws", 3));
        assert!(
            f.summary.starts_with(
                "SYNs from 198.51.100.7 to :443 dropped: PAWS against TIME_WAIT; this address hides hosts with \
                 different timestamp clocks (NAT)"
            ),
            "{}",
            f.summary
        );
        assert_eq!(f.drops.as_ref().unwrap()["TCP_RFC7323_TW_PAWS"], 3);
        assert_eq!(f.local, ["198.51.100.1:443"]);
        assert!(f.advice.contains("removed in 4.12"));
    }

    #[test]
    fn syns_counted_at_the_listener_add_those_time_wait_rejected() {
        let funnel = [stage(7, 443, funnel_stage::SYNACK_OUT, 2), stage(7, 443, funnel_stage::HANDSHAKE_DONE, 2)];
        let seen = [(
            SynKey { addr: addr(7), netns: NS, port: 443, family: FAMILY_IPV4, _pad: 0 },
            PeerStats { count: 2, first_ns: 1, last_ns: 2, ..Default::default() },
        )];
        let drops = [drop(7, 443, 38, 6, 3)];
        let (rows, found) = run_with(&funnel, &seen, &drops, Counters::new(), false);
        assert_eq!((rows[0].funnel.syns, rows[0].funnel.unanswered), (5, 3));
        assert_eq!((found[0].variant, found[0].count), ("time_wait_paws", 3));
    }

    #[test]
    fn silent_listen_overflows_are_taken_from_the_counter() {
        let funnel = [
            stage(9, 8443, funnel_stage::SYN_IN, 4),
            stage(9, 8443, funnel_stage::SYNACK_OUT, 1),
            stage(9, 8443, funnel_stage::HANDSHAKE_DONE, 1),
        ];
        let (_, found) = run(&funnel, &[], Counters::from([("TcpExtListenOverflows".into(), 3)]), false);
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!((f.variant, f.count), ("listen_overflow", 3));
        assert_eq!(f.drops.as_ref().unwrap()["TcpExtListenOverflows"], 3);
        assert!(!f.summary.contains("NAT") && f.summary.contains("listen queue overflow"), "{}", f.summary);
        assert!(f.advice.contains("holds 1 of 1"), "{}", f.advice);
    }

    #[test]
    fn silent_syn_queue_drops_are_taken_from_the_counter() {
        let funnel = [stage(9, 8443, funnel_stage::SYN_IN, 5), stage(9, 8443, funnel_stage::SYNACK_OUT, 1)];
        let (_, found) = run(&funnel, &[], Counters::from([("TcpExtTCPReqQFullDrop".into(), 4)]), false);
        assert_eq!(found.iter().map(|f| (f.variant, f.count)).collect::<Vec<_>>(), [("syn_queue_full", 4)]);
        assert_eq!(found[0].drops.as_ref().unwrap()["TcpExtTCPReqQFullDrop"], 4);
        assert!(found[0].summary.contains("SYN queue full"), "{}", found[0].summary);
    }

    #[test]
    fn each_kernel_reason_a_listener_gives_names_its_own_cause() {
        // Three peers, each to :443 with one SYN and one drop the kernel gave a reason.
        let funnel = [
            stage(3, 443, funnel_stage::SYN_IN, 1),
            stage(4, 443, funnel_stage::SYN_IN, 1),
            stage(5, 443, funnel_stage::SYN_IN, 1),
        ];
        let drops = [
            drop(3, 443, 12, TCP_LISTEN, 1),
            drop(4, 443, 18, TCP_LISTEN, 1),
            drop(5, 443, 2, TCP_LISTEN, 1),
        ];
        let (_, found) = run(&funnel, &drops, Counters::new(), false);
        let causes: Vec<(&str, &str, u64)> = found.iter().map(|f| (f.peer.as_str(), f.variant, f.count)).collect();
        assert_eq!(
            causes,
            [("198.51.100.3", "invalid_flags", 1), ("198.51.100.4", "socket_backlog", 1), ("198.51.100.5", "no_socket", 1)],
            "{found:#?}"
        );
        assert!(found[2].advice.contains("answered with an RST"), "{}", found[2].advice);
        assert!(found.iter().all(|f| !f.summary.contains("NAT")), "{found:#?}");
    }

    #[test]
    fn overflows_with_a_reason_are_not_counted_twice() {
        let funnel = [
            stage(9, 8443, funnel_stage::SYN_IN, 3),
            stage(9, 8443, funnel_stage::SYNACK_OUT, 2),
        ];
        let drops = [drop(9, 8443, 40, TCP_NEW_SYN_RECV, 2)];
        let (_, found) = run(&funnel, &drops, Counters::from([("TcpExtListenOverflows".into(), 3)]), false);
        let f = &found[0];
        assert_eq!(f.drops.as_ref().unwrap()["TCP_LISTEN_OVERFLOW"], 2);
        assert_eq!(f.drops.as_ref().unwrap()["TcpExtListenOverflows"], 1);
    }

    #[test]
    fn answered_syns_and_forwarded_traffic_make_no_finding() {
        let funnel = [
            stage(2, 443, funnel_stage::SYN_IN, 3),
            stage(2, 443, funnel_stage::SYNACK_OUT, 4),
            stage(2, 443, funnel_stage::SYNACK_RETRANSMIT, 1),
            stage(2, 443, funnel_stage::HANDSHAKE_DONE, 3),
            // No listener on 80 here: a router forwarding the peer's SYNs.
            stage(3, 80, funnel_stage::SYN_IN, 9),
        ];
        let (rows, found) = run(&funnel, &[], Counters::new(), false);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].funnel.unanswered, 0);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn without_a_time_wait_drop_reason_the_counter_names_the_cause() {
        let funnel = [stage(7, 443, funnel_stage::SYN_IN, 4), stage(7, 443, funnel_stage::SYNACK_OUT, 1)];
        let (_, found) = run(&funnel, &[], Counters::from([("TcpExtPAWSTimewait".into(), 3)]), true);
        assert_eq!((found[0].variant, found[0].count), ("time_wait_paws", 3));
        assert!(found[0].summary.contains("dropped: PAWS against TIME_WAIT"), "{}", found[0].summary);
        assert!(found[0].summary.contains("(NAT)"), "{}", found[0].summary);
    }

    #[test]
    fn a_resent_syn_answered_by_a_retransmitted_synack_is_answered() {
        let funnel = [
            stage(2, 443, funnel_stage::SYN_IN, 4),
            stage(2, 443, funnel_stage::SYNACK_OUT, 4),
            stage(2, 443, funnel_stage::SYNACK_RETRANSMIT, 1),
            stage(2, 443, funnel_stage::HANDSHAKE_DONE, 3),
        ];
        let (rows, found) = run(&funnel, &[], Counters::new(), false);
        assert_eq!(rows[0].funnel.unanswered, 0);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn before_6_16_the_established_counter_names_the_cause() {
        let funnel = [stage(7, 443, funnel_stage::SYN_IN, 4), stage(7, 443, funnel_stage::SYNACK_OUT, 1)];
        let (_, found) = run(&funnel, &[], Counters::from([("TcpExtPAWSEstab".into(), 3)]), false);
        assert_eq!((found[0].variant, found[0].count), ("time_wait_paws", 3));
        assert_eq!(found[0].drops.as_ref().unwrap()["TcpExtPAWSEstab"], 3);
    }

    #[test]
    fn unexplained_unanswered_syns_say_so() {
        let funnel = [stage(4, 443, funnel_stage::SYN_IN, 2)];
        let (_, found) = run(&funnel, &[], Counters::new(), false);
        assert_eq!(found[0].variant, "unknown");
        assert!(found[0].advice.contains("candidates to check, not findings"), "{}", found[0].advice);
        assert!(found[0].summary.contains("2 of the unanswered SYNs have no drop reason"), "{}", found[0].summary);
    }

    /// The replay: a live connection's SYN sent again twice intact (challenge ACKs) and
    /// once with a broken checksum, on the established 4-tuple.
    fn replayed_syns(counters: Counters) -> (Vec<FunnelRow>, Vec<Finding>) {
        const TCP_ESTABLISHED: u8 = 1;
        let funnel = [
            stage(2, 443, funnel_stage::SYN_IN, 4),
            stage(2, 443, funnel_stage::SYNACK_OUT, 1),
            stage(2, 443, funnel_stage::HANDSHAKE_DONE, 1),
        ];
        let drops = [drop(2, 443, 46, TCP_ESTABLISHED, 2), drop(2, 443, 5, TCP_ESTABLISHED, 1)];
        let sampled = HashMap::from([((IpAddr::from([198, 51, 100, 2]), NS, 443, "TCP_CSUM".to_string()), 1)]);
        run_sampled(&funnel, &[], &drops, counters, false, sampled)
    }

    #[test]
    fn syns_answered_by_a_challenge_ack_are_answered_and_a_corrupt_one_is_named() {
        let (rows, found) = replayed_syns(Counters::from([
            ("TcpExtTCPChallengeACK".into(), 2),
            ("TcpExtTCPSYNChallenge".into(), 2),
            ("TcpInCsumErrors".into(), 1),
        ]));
        assert_eq!((rows[0].funnel.challenge_acks, rows[0].funnel.unanswered), (2, 1), "{rows:#?}");
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!((f.variant, f.count), ("bad_checksum", 1), "{f:#?}");
        let drops = f.drops.as_ref().unwrap();
        assert_eq!((drops["TCP_CSUM"], drops["TcpExtTCPChallengeACK"]), (1, 2), "{drops:?}");
        assert!(f.summary.contains("2 SYNs on connections this host holds open were answered with a challenge ACK"));
        assert!(!f.summary.contains("no drop reason"), "{}", f.summary);
        let evidence = f.evidence.as_ref().unwrap();
        assert!(evidence.iter().any(|e| e == "kernel drop reason TCP_CSUM: 1"), "{evidence:?}");
        assert!(evidence[0].contains("4 SYNs in, 1 SYN-ACK out, 2 challenge ACKs"), "{evidence:?}");
        assert!(f.disproved_by.as_ref().unwrap().contains("SYN-ACKs to 198.51.100.2"), "{f:#?}");
    }

    #[test]
    fn syns_paws_rejected_on_a_connection_are_answered_by_a_duplicate_ack() {
        // 6.1: the intact replays fail PAWS before the SYN check and get a duplicate ACK each.
        const TCP_ESTABLISHED: u8 = 1;
        let funnel = [
            stage(2, 443, funnel_stage::SYN_IN, 4),
            stage(2, 443, funnel_stage::SYNACK_OUT, 1),
            stage(2, 443, funnel_stage::HANDSHAKE_DONE, 1),
        ];
        let drops = [drop(2, 443, 36, TCP_ESTABLISHED, 5), drop(2, 443, 5, TCP_ESTABLISHED, 1)];
        let peer = IpAddr::from([198, 51, 100, 2]);
        let sampled =
            HashMap::from([((peer, NS, 443, "TCP_CSUM".to_string()), 1), ((peer, NS, 443, PAWS_ON_CONNECTION.to_string()), 2)]);
        let counters = || Counters::from([(PAWS_REJECTED.into(), 5), ("TcpInCsumErrors".into(), 1)]);
        let (rows, found) = run_sampled(&funnel, &[], &drops, counters(), false, sampled.clone());
        assert_eq!((rows[0].funnel.paws_dupacks, rows[0].funnel.unanswered), (2, 1), "{rows:#?}");
        assert_eq!(found.iter().map(|f| (f.variant, f.count)).collect::<Vec<_>>(), [("bad_checksum", 1)], "{found:#?}");
        assert!(found[0].summary.contains("2 SYNs on connections this host holds open carried an older timestamp"));
        assert!(found[0].evidence.as_ref().unwrap()[0].contains("2 duplicate ACKs after PAWS"), "{found:#?}");
        // Held back by the limiter: no answer, and the namespace's counters say so.
        let mut limited = counters();
        limited.insert(PAWS_UNANSWERED.into(), 5);
        let (rows, _) = run_sampled(&funnel, &[], &drops, limited, false, sampled.clone());
        assert_eq!((rows[0].funnel.paws_dupacks, rows[0].funnel.unanswered), (0, 3), "{rows:#?}");
        // Counted at the listener, those SYNs were never counted, so nothing is taken off.
        let seen = [(
            SynKey { addr: addr(2), netns: NS, port: 443, family: FAMILY_IPV4, _pad: 0 },
            PeerStats { count: 1, first_ns: 1, last_ns: 2, ..Default::default() },
        )];
        let (rows, _) = run_sampled(&funnel[1..], &seen, &drops, counters(), false, sampled);
        assert_eq!(rows[0].funnel.paws_dupacks, 0, "{rows:#?}");
    }

    #[test]
    fn a_challenge_ack_the_rate_limit_held_back_is_no_answer_but_still_explained() {
        let (rows, found) = replayed_syns(Counters::from([("TcpExtTCPChallengeACK".into(), 1)]));
        assert_eq!((rows[0].funnel.challenge_acks, rows[0].funnel.unanswered), (1, 2), "{rows:#?}");
        let f = &found[0];
        assert_ne!(f.variant, "unknown", "{f:#?}");
        assert!(!f.summary.contains("no drop reason"), "{}", f.summary);
    }

    #[test]
    fn without_sampled_syns_a_checksum_drop_on_a_connection_is_not_taken_for_a_syn() {
        const TCP_ESTABLISHED: u8 = 1;
        let funnel = [stage(2, 443, funnel_stage::SYN_IN, 1), stage(2, 443, funnel_stage::SYNACK_OUT, 1)];
        let drops = [drop(2, 443, 5, TCP_ESTABLISHED, 3)];
        let (rows, found) = run(&funnel, &drops, Counters::new(), false);
        assert!(rows[0].funnel.drops.is_empty(), "{rows:#?}");
        assert!(found.is_empty(), "{found:#?}");
    }
}
