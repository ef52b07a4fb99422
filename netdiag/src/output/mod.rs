//! Output: the diagnose report as JSON (a contract others parse) and as text for a person.
pub mod pcap;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    counters::Counters,
    hooks::{HookStatus, PAWS_REASONS, ProbeStats},
    verdict::{Finding, nat_clocks::PeerClocks, syn_funnel::FunnelRow},
    workload::Workload,
};

#[derive(Clone, Debug, Serialize)]
pub struct PeerReport {
    pub addr: String,
    pub netns: String,
    /// The container, pod or host behind `netns`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<crate::workload::Workload>,
    /// Drop counts by kernel reason name, exact (kept in a kernel map).
    pub by_reason: BTreeMap<String, u64>,
}

/// For one namespace and counter: what the kernel counted and how much netdiag pinned on peers.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Attribution {
    pub netns: String,
    pub counter: String,
    pub kernel_delta: u64,
    pub attributed: u64,
}

/// The evidence file of a session.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PcapSummary {
    pub path: String,
    /// Packets written.
    pub packets: u64,
    /// Drops not captured: over the rate limit or the capture ring full (their counts still hold).
    pub skipped: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub duration_s: f64,
    pub hooks: Vec<HookStatus>,
    pub peers: Vec<PeerReport>,
    pub findings: Vec<Finding>,
    /// Non-zero TCP counter deltas of the session, per namespace name.
    pub counters: BTreeMap<String, Counters>,
    pub attribution: Vec<Attribution>,
    /// Where `--pcap` wrote evidence, and how much; absent without `--pcap`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcap: Option<PcapSummary>,
    /// Samples the kernel could not put in the ring buffer (full). Counts stay exact regardless.
    pub lost_events: u64,
    /// Packets with a watched drop reason whose headers could not be parsed.
    pub unparsed_packets: u64,
    pub probe_stats: ProbeStats,
    /// SYN funnel per peer and listening port (SYNs, SYN-ACKs, handshakes, handshake drops).
    pub syn_funnel: Vec<FunnelRow>,
    /// Timestamp clocks seen in each peer's SYNs.
    pub timestamp_clocks: Vec<PeerClocks>,
}

const WIDTH: usize = 96;

/// What a finding's `count` counts.
pub fn counted(kind: &str) -> &'static str {
    match kind {
        "unanswered_syns" => "unanswered SYNs",
        "nat_timestamp_clocks" => "SYNs sampled",
        _ => "drops",
    }
}

fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

impl Report {
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "netdiag diagnose — kernel {}, {:.1} s, {} finding(s)\n\nhooks:\n",
            self.kernel,
            self.duration_s,
            self.findings.len()
        );
        for hook in &self.hooks {
            let state = if hook.active { "active" } else { "unavailable" };
            out += &format!("  {:<18} {:<11} {:<12} {}\n", hook.name, hook.backend, state, hook.detail);
        }
        out += "\nfindings:\n";
        if self.findings.is_empty() {
            out += "  none: no watched drop was attributed to any peer during the session\n";
        }
        for f in &self.findings {
            out += &finding_text(f);
            out += "\n";
        }
        out += &self.other_reasons_text();
        if !self.syn_funnel.is_empty() {
            out += "SYN funnel (per peer and listening port):\n";
            out += &funnel_table(&self.syn_funnel, |ns| self.netns_shown(ns));
            out += "\n";
        }
        out += "kernel counters (session deltas, per namespace):\n";
        if self.counters.is_empty() {
            out += "  no TCP counter moved\n";
        }
        for (ns, counters) in &self.counters {
            let list: Vec<String> = counters.iter().map(|(k, v)| format!("{k} {v}")).collect();
            out += &wrap(&format!("{}: {}", self.netns_shown(ns), list.join(", ")), "  ");
            out += "\n";
        }
        for a in &self.attribution {
            out += &format!(
                "  {} {}: kernel counted {}, attributed to named peers {}\n",
                self.netns_shown(&a.netns), a.counter, a.kernel_delta, a.attributed
            );
        }
        if let Some(pcap) = &self.pcap {
            out += &format!(
                "\nevidence: {} packet(s) written to {} ({} not captured: rate limit)\n",
                pcap.packets, pcap.path, pcap.skipped
            );
        }
        out += &format!(
            "\nlost events: {} (ring buffer full; per-peer counts unaffected), unparsed packets: {}\n",
            self.lost_events, self.unparsed_packets
        );
        out += &format!(
            "peer map: {} peer(s) held, {} evicted (least recently counted first; their counts are lost)\n",
            self.probe_stats.peer_map_entries, self.probe_stats.peer_map_evictions
        );
        out
    }

    fn netns_shown(&self, netns: &str) -> String {
        netns_shown(netns, &self.findings, &self.peers)
    }

    /// Peers with drops of the reasons `--reason` added, busiest first, exact kernel counts.
    fn other_reasons_text(&self) -> String {
        let other = |p: &&PeerReport| p.by_reason.keys().any(|r| !PAWS_REASONS.contains(&r.as_str()));
        let shown: Vec<&PeerReport> = self.peers.iter().filter(other).take(OTHER_REASON_PEERS).collect();
        if shown.is_empty() {
            return String::new();
        }
        let total = self.peers.iter().filter(other).count();
        let mut out = format!("peers by drop reason (top {} of {total}):\n", shown.len());
        for peer in shown {
            let reasons: Vec<String> = peer.by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
            out += &format!("  {} ({}): {}\n", peer.addr, place(&peer.netns, peer.workload.as_ref()), reasons.join(", "));
        }
        out + "\n"
    }
}

/// A namespace in the tables: a bare inode is replaced by the workload a finding or peer row
/// found behind it (`container/web`, `netns/nginx.service`).
pub fn netns_shown(netns: &str, findings: &[Finding], peers: &[PeerReport]) -> String {
    let workloads = findings.iter().map(|f| (&f.netns, &f.workload)).chain(peers.iter().map(|p| (&p.netns, &p.workload)));
    let found = workloads.filter(|(ns, _)| *ns == netns && is_bare_inode(netns)).find_map(|(_, w)| naming(netns, w.as_ref()));
    found.map_or_else(|| netns.to_string(), Workload::label)
}

/// One finding as the text views print it: who, where and how much; a flow finding's rates;
/// the summary, what it rests on, and what to do.
pub fn finding_text(f: &Finding) -> String {
    let mut out = format!(
        "  [{} / {}] peer {}{} ({}) → {}: {} {}, {:.2}/s, {} … {}\n",
        f.kind,
        f.variant,
        f.peer,
        f.peer_workload.as_ref().filter(|w| w.is_container_or_pod()).map(|w| format!(" [{}]", w.describe())).unwrap_or_default(),
        place(&f.netns, f.workload.as_ref()),
        if f.local.is_empty() { "-".to_string() } else { f.local.join(", ") },
        f.count,
        counted(f.kind),
        f.rate_per_s,
        f.first_seen,
        f.last_seen
    );
    if let Some(flow) = &f.flow {
        let pace = match (flow.srtt_us, flow.segments_per_round_trip) {
            (Some(srtt), Some(n)) => format!("; RTT {:.1} ms, {n:.2} segments per round trip", srtt as f64 / 1000.0),
            _ => String::new(),
        };
        out += &format!(
            "    {:.1} out-of-window/s in, {:.1} duplicate ACKs/s out, {:.1}/s suppressed{pace}; why: {}; {} … {}\n",
            flow.oow_in_per_s,
            flow.dupacks_out_per_s,
            flow.dupacks_suppressed_per_s,
            flow.why,
            flow.started,
            flow.ended.as_deref().unwrap_or("ongoing")
        );
    }
    out += &wrap(&f.summary, "    ");
    out += "\n";
    out += &grounds_text(f);
    out += &wrap(&format!("What to do: {}", f.advice), "    ");
    out + "\n"
}

/// What a finding rests on, so the text never names a NAT, a loop or a firewall without it:
/// its evidence, the kernel facts the scorecard matched (`none` when it matched none), and what
/// would prove it wrong. Parts the finding does not carry are left out.
fn grounds_text(f: &Finding) -> String {
    let mut out = String::new();
    if let Some(evidence) = f.evidence.as_ref().filter(|e| !e.is_empty()) {
        out += "    Evidence:\n";
        for line in evidence {
            out += &bullet(line);
            out += "\n";
        }
    }
    if let Some(facts) = &f.kernel_facts {
        // Said when empty: a finding nothing from the kernel backs must not read as a proven one.
        let pairs: Vec<String> = facts.iter().map(|(name, value)| format!("{name} {value}")).collect();
        let listed = match (pairs.is_empty(), f.backed) {
            (true, _) => "none: nothing the kernel reported backs this finding".to_string(),
            (false, Some(false)) => {
                format!("{}; not the ones this finding needs: treat it as unconfirmed", pairs.join(", "))
            }
            (false, _) => pairs.join(", "),
        };
        out += &wrap(&format!("Kernel facts: {listed}"), "    ");
        out += "\n";
    }
    if let Some(disproof) = &f.disproved_by {
        out += &wrap(&format!("Would be disproved by: {disproof}"), "    ");
        out += "\n";
    }
    out
}

/// `text` as a list item under a 4-space heading: `- ` first, continuation lines aligned with
/// the text.
fn bullet(text: &str) -> String {
    const HANGING: &str = "      ";
    format!("    - {}", &wrap(text, HANGING)[HANGING.len()..])
}

/// The SYN funnel rows as a table, namespaces as `netns_shown` names them.
pub fn funnel_table(rows: &[FunnelRow], netns_shown: impl Fn(&str) -> String) -> String {
    let mut out = format!(
        "  {:<24} {:<18} {:>6} {:>7} {:>8} {:>8} {:>9} {:>7} {:>10}  drops\n",
        "peer", "netns", "port", "SYNs", "SYN-ACKs", "(retx)", "challenge", "done", "unanswered"
    );
    for r in rows {
        let f = &r.funnel;
        let drops: Vec<String> = f.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out += &format!(
            "  {:<24} {:<18} {:>6} {:>7} {:>8} {:>8} {:>9} {:>7} {:>10}  {}\n",
            r.peer,
            netns_shown(&r.netns),
            r.port,
            f.syns,
            f.synacks,
            f.synack_retransmits,
            f.challenge_acks,
            f.handshakes,
            f.unanswered,
            if drops.is_empty() { "-".to_string() } else { drops.join(", ") }
        );
    }
    out
}

/// Where a finding or row was seen, for a person: the container or pod by name, with the
/// namespace's `ip netns` name if it has one (never a bare inode beside a name); an unnamed
/// namespace by its processes' systemd unit; else the namespace.
pub fn place(netns: &str, workload: Option<&Workload>) -> String {
    match naming(netns, workload) {
        Some(w) if is_bare_inode(netns) => w.describe(),
        Some(w) => format!("{}, netns {netns}", w.describe()),
        None => format!("netns {netns}"),
    }
}

/// The workload that says more than the namespace's own name: a container or pod, or for a
/// namespace known by inode alone, whatever names it (its processes' systemd unit).
fn naming<'a>(netns: &str, workload: Option<&'a Workload>) -> Option<&'a Workload> {
    workload.filter(|w| w.is_container_or_pod() || (is_bare_inode(netns) && w.name.is_some()))
}

/// How the report spells a namespace that has no `ip netns` name.
fn is_bare_inode(netns: &str) -> bool {
    netns.starts_with("inode:")
}

/// Peers listed in the text report for `--reason` drops.
const OTHER_REASON_PEERS: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::syn_funnel::Funnel;

    fn report_with(peers: Vec<PeerReport>, probe_stats: ProbeStats) -> Report {
        Report {
            kernel: "6.18".into(),
            duration_s: 1.0,
            hooks: Vec::new(),
            peers,
            findings: Vec::new(),
            counters: BTreeMap::new(),
            attribution: Vec::new(),
            pcap: None,
            syn_funnel: Vec::new(),
            timestamp_clocks: Vec::new(),
            lost_events: 0,
            unparsed_packets: 0,
            probe_stats,
        }
    }

    fn peer(addr: &str, reason: &str, count: u64) -> PeerReport {
        PeerReport { addr: addr.into(), netns: "srv".into(), workload: None, by_reason: BTreeMap::from([(reason.into(), count)]) }
    }

    #[test]
    fn text_shows_peer_map_evictions_and_peers_of_added_reasons() {
        let stats = ProbeStats { peer_inserts: 1_000_016, peer_map_entries: 16, peer_map_evictions: 1_000_000, ..ProbeStats::default() };
        let mut peers = vec![peer("2001:db8:1::2", "NO_SOCKET", 15624), peer("198.51.100.2", "TCP_RFC7323_PAWS", 5)];
        peers.extend((0..20).map(|n| peer(&format!("2001:db8:ff00::{n}"), "NO_SOCKET", 1)));
        let text = report_with(peers, stats).to_text();
        assert!(text.contains("peer map: 16 peer(s) held, 1000000 evicted"), "{text}");
        assert!(text.contains("peers by drop reason (top 10 of 21):\n  2001:db8:1::2 (netns srv): NO_SOCKET 15624\n"), "{text}");
        assert!(!text.contains("198.51.100.2 (netns"), "PAWS peers are in the findings, not this list: {text}");
    }

    #[test]
    fn text_has_no_reason_list_when_only_paws_is_watched() {
        let text = report_with(vec![peer("198.51.100.2", "TCP_RFC7323_PAWS", 5)], ProbeStats::default()).to_text();
        assert!(!text.contains("peers by drop reason"), "{text}");
    }

    #[test]
    fn text_names_the_container_not_the_inode() {
        let container = |name: &str, id: char| Workload {
            kind: "container",
            runtime: Some("podman".into()),
            id: Some(id.to_string().repeat(64)),
            name: Some(name.into()),
            ..Workload::default()
        };
        let finding = Finding {
            kind: "paws_rejections",
            variant: "time_wait",
            peer: "198.51.100.2".into(),
            netns: "inode:4026532178".into(),
            workload: Some(container("web", 'a')),
            peer_workload: Some(container("client", 'b')),
            ..Finding::default()
        };
        let mut report = report_with(Vec::new(), ProbeStats::default());
        report.findings = vec![finding.clone()];
        let text = report.to_text();
        assert!(
            text.contains("peer 198.51.100.2 [container client (podman bbbbbbbbbbbb)] (container web (podman aaaaaaaaaaaa)) → -"),
            "{text}"
        );
        assert!(!text.contains("inode:"), "{text}");
        report.counters = BTreeMap::from([("inode:4026532178".to_string(), Counters::from([("TcpExtPAWSTimewait".to_string(), 4)]))]);
        assert!(report.to_text().contains("  container/web: TcpExtPAWSTimewait 4\n"), "{}", report.to_text());
        report.findings = vec![Finding { netns: "srv".into(), workload: Some(Workload { kind: "netns", ..Workload::default() }), peer_workload: None, ..finding }];
        assert!(report.to_text().contains("peer 198.51.100.2 (netns srv) → -"), "{}", report.to_text());
    }

    #[test]
    fn text_names_an_unnamed_namespace_by_its_unit() {
        let unit = Workload { kind: "netns", name: Some("nginx.service".into()), ..Workload::default() };
        assert_eq!(place("inode:4026532178", Some(&unit)), "netns nginx.service");
        // An `ip netns` name is the namespace's own: shown once, not beside the workload's.
        let named = Workload { name: Some("srv".into()), ..unit.clone() };
        assert_eq!(place("srv", Some(&named)), "netns srv");
        assert_eq!(place("inode:4026532178", Some(&Workload { kind: "netns", ..Workload::default() })), "netns inode:4026532178");
        let finding = Finding { netns: "inode:4026532178".into(), workload: Some(unit), ..Finding::default() };
        assert_eq!(netns_shown("inode:4026532178", &[finding], &[]), "netns/nginx.service");
    }

    fn report_with_finding(finding: Finding) -> Report {
        Report { findings: vec![finding], ..report_with(Vec::new(), ProbeStats::default()) }
    }

    #[test]
    fn text_shows_what_a_finding_rests_on_before_what_to_do() {
        let long = "an evidence line long enough to be wrapped onto a second line of the report under its bullet, \
                    aligned with its text";
        let finding = Finding {
            kind: "nat_timestamp_clocks",
            variant: "several_hosts",
            peer: "198.51.100.7".into(),
            summary: "Several hosts share 198.51.100.7.".into(),
            advice: "Give the NAT more addresses.".into(),
            evidence: Some(vec!["source port 41000 carried TSvals of 2 clocks".into(), long.into()]),
            kernel_facts: Some(BTreeMap::from([("TCP_RFC7323_TW_PAWS".into(), 4), ("TcpExtPAWSTimewait".into(), 4)])),
            disproved_by: Some("one clock explaining every TSval".into()),
            ..Finding::default()
        };
        let text = report_with_finding(finding).to_text();
        let grounds = "    Several hosts share 198.51.100.7.\n    Evidence:\n    - source port 41000 carried TSvals of 2 clocks\n    - an evidence";
        assert!(text.contains(grounds), "{text}");
        let continued = text.lines().skip_while(|l| !l.starts_with("    - an evidence")).nth(1).unwrap();
        assert!(continued.starts_with("      ") && !continued.starts_with("       "), "{text}");
        assert!(text.lines().filter(|l| l.starts_with("    ")).all(|l| l.len() <= WIDTH), "{text}");
        let rest = "\n    Kernel facts: TCP_RFC7323_TW_PAWS 4, TcpExtPAWSTimewait 4\n    Would be disproved by: one clock explaining \
                    every TSval\n    What to do: Give the NAT more addresses.\n";
        assert!(text.contains(rest), "{text}");
    }

    #[test]
    fn text_has_no_grounds_headings_for_a_finding_without_them_but_says_unbacked() {
        let bare = Finding {
            kind: "paws_rejections",
            summary: "Stale timestamps.".into(),
            advice: "Find the rewriter.".into(),
            ..Finding::default()
        };
        let text = report_with_finding(bare.clone()).to_text();
        for heading in ["Evidence:", "Kernel facts:", "Would be disproved by:"] {
            assert!(!text.contains(heading), "{heading}: {text}");
        }
        assert!(text.contains("    Stale timestamps.\n    What to do: Find the rewriter.\n"), "{text}");
        // Kernel facts looked for and none found are said, not hidden.
        let unbacked = Finding { evidence: Some(Vec::new()), kernel_facts: Some(BTreeMap::new()), ..bare.clone() };
        let text = report_with_finding(unbacked).to_text();
        assert!(!text.contains("Evidence:"), "{text}");
        assert!(text.contains("    Kernel facts: none: nothing the kernel reported backs this finding\n"), "{text}");
        // Facts that moved, but not the ones the claim needs.
        let beside = Finding { kernel_facts: Some(BTreeMap::from([("TcpInSegs".into(), 3)])), backed: Some(false), ..bare };
        let text = report_with_finding(beside).to_text();
        assert!(text.contains("    Kernel facts: TcpInSegs 3; not the ones this finding needs: treat it as unconfirmed\n"), "{text}");
    }

    #[test]
    fn funnel_table_counts_challenge_acks_beside_the_syn_acks() {
        // Built field by field: the row's namespace inode is private to the funnel.
        let mut row = FunnelRow::default();
        (row.peer, row.netns, row.port) = ("198.51.100.7".into(), "srv".into(), 443);
        row.funnel = Funnel { syns: 4, synacks: 1, challenge_acks: 2, handshakes: 1, unanswered: 1, ..Funnel::default() };
        let mut report = report_with(Vec::new(), ProbeStats::default());
        report.syn_funnel = vec![row];
        let text = report.to_text();
        let table: Vec<Vec<&str>> =
            text.lines().skip_while(|l| !l.starts_with("SYN funnel")).skip(1).take(2).map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(table[0], ["peer", "netns", "port", "SYNs", "SYN-ACKs", "(retx)", "challenge", "done", "unanswered", "drops"]);
        assert_eq!(table[1], ["198.51.100.7", "srv", "443", "4", "1", "0", "2", "1", "1", "-"]);
    }

    #[test]
    fn wraps_long_text_at_word_boundaries() {
        let text = "word ".repeat(40);
        let wrapped = wrap(&text, "  ");
        assert!(wrapped.lines().all(|l| l.len() <= WIDTH && l.starts_with("  word")));
        assert_eq!(wrapped.split_whitespace().count(), 40);
    }
}
