//! A scorecard against the kernel: each finding beside the kernel facts it rests on — counter
//! deltas of its namespace, drop reasons the kernel counted for its peer, packets the kernel
//! programs counted in their maps. Each kind names the facts its claim needs; a finding whose
//! needed facts did not move has nothing behind it (`backed: false`), and `netdiag selftest`
//! and the tests fail it.
use std::collections::BTreeMap;

use serde::Serialize;

use super::{Finding, paws::PAWS_COUNTERS, syn_funnel::FunnelRow};
use crate::counters::Counters;

/// Counters that move with out-of-window segments and their answers on some kernels.
const OUT_OF_WINDOW_COUNTERS: &[&str] =
    &["TcpExtBeyondWindow", "TcpExtTCPACKSkippedSeq", "TcpExtTCPACKSkippedPAWS", "TcpExtPAWSEstab"];
/// Every segment in and out of a namespace: a loop or flood moves both whatever the kernel
/// version, and a detector that invented one in a quiet namespace would find them still.
const SEGMENTS_IN: &str = "TcpInSegs";
const SEGMENTS_OUT: &str = "TcpOutSegs";
/// Packet counts the kernel programs kept in their maps, under these names.
const SYNS_COUNTED: &str = "SYNs from the peer (kernel map)";
const OOW_COUNTED: &str = "out-of-window segments in on the flow (kernel map)";
const DUPACKS_COUNTED: &str = "duplicate ACKs out on the flow (kernel map)";
/// Evidence from PAWS against TIME_WAIT, which a clock proof may rest on instead of SYN counts.
const TIME_WAIT_PAWS: &[&str] = &["TCP_RFC7323_TW_PAWS", "TcpExtPAWSTimewait"];

/// What the kernel said during the session, as the scorecard reads it.
pub struct KernelSaid<'a> {
    /// The session's TCP counter deltas, by namespace name.
    pub counters: &'a BTreeMap<String, Counters>,
    /// Drops the kernel counted for a peer (address, namespace name), by reason name.
    pub reasons_of: &'a dyn Fn(&str, &str) -> BTreeMap<String, u64>,
    /// The SYN funnel rows, counted in kernel maps.
    pub syn_funnel: &'a [FunnelRow],
}

impl KernelSaid<'_> {
    /// SYNs the kernel counted from `peer` in `netns`, to `port` or to any.
    fn syns(&self, peer: &str, netns: &str, port: Option<u16>) -> u64 {
        self.syn_funnel
            .iter()
            .filter(|r| r.peer == peer && r.netns == netns && port.is_none_or(|p| r.port == p))
            .map(|r| r.funnel.syns)
            .sum()
    }
}

/// The facts behind `f`, and whether the ones its claim needs moved.
fn facts_of(f: &Finding, said: &KernelSaid) -> (BTreeMap<String, u64>, bool) {
    let none = Counters::new();
    let ns_counters = said.counters.get(&f.netns).unwrap_or(&none);
    let by_reason = (said.reasons_of)(&f.peer, &f.netns);
    let fact = |name: &str| by_reason.get(name).or_else(|| ns_counters.get(name)).copied().unwrap_or(0);
    let mut facts: BTreeMap<String, u64> = BTreeMap::new();
    let backed = match f.kind {
        "paws_rejections" => {
            facts.extend(PAWS_COUNTERS.iter().map(|c| (c.to_string(), fact(c))));
            facts.extend(by_reason.iter().filter(|(r, _)| r.contains("RFC7323")).map(|(r, n)| (r.clone(), *n)));
            facts.values().any(|n| *n > 0)
        }
        "unanswered_syns" => {
            facts.insert(SYNS_COUNTED.into(), said.syns(&f.peer, &f.netns, f.listener_port));
            let causes: Vec<&str> = f.drops.iter().flatten().map(|(name, _)| name.as_str()).collect();
            facts.extend(causes.iter().map(|name| (name.to_string(), fact(name))));
            // `unknown` claims no cause, only SYNs without an answer.
            facts[SYNS_COUNTED] > 0 && (f.variant == "unknown" || causes.iter().any(|name| facts[*name] > 0))
        }
        "nat_timestamp_clocks" => {
            facts.insert(SYNS_COUNTED.into(), said.syns(&f.peer, &f.netns, None));
            facts.extend(TIME_WAIT_PAWS.iter().map(|c| (c.to_string(), fact(c))));
            facts.values().any(|n| *n > 0)
        }
        "ack_loop" | "out_of_window_flood" => {
            let dupacks = f.flow.as_ref().map_or(0, |flow| flow.dupacks_out);
            facts.insert(OOW_COUNTED.into(), f.count);
            facts.insert(DUPACKS_COUNTED.into(), dupacks);
            facts.extend([SEGMENTS_IN, SEGMENTS_OUT].iter().map(|c| (c.to_string(), fact(c))));
            facts.extend(OUT_OF_WINDOW_COUNTERS.iter().map(|c| (c.to_string(), fact(c))));
            // Segments came in; a loop also needs our answers going out.
            let answers_needed = f.kind == "ack_loop";
            facts[SEGMENTS_IN] > 0 && (!answers_needed || (dupacks > 0 && facts[SEGMENTS_OUT] > 0))
        }
        _ => false,
    };
    facts.retain(|_, n| *n > 0);
    (facts, backed)
}

/// Sets each finding's `kernel_facts` and `backed` from what the kernel said.
pub fn score(findings: &mut [Finding], said: &KernelSaid) {
    for f in findings {
        let (facts, backed) = facts_of(f, said);
        f.kernel_facts = Some(facts);
        f.backed = Some(backed);
    }
}

/// One finding and its facts.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    pub kind: &'static str,
    pub variant: &'static str,
    pub peer: String,
    pub netns: String,
    pub count: u64,
    /// Fact → what the kernel said.
    pub facts: BTreeMap<String, u64>,
    /// The facts the finding's claim needs moved.
    pub backed: bool,
}

impl Row {
    /// The row of a finding [`score`] has scored; an unscored one is backed by nothing.
    pub fn of(f: &Finding) -> Row {
        Row {
            kind: f.kind,
            variant: f.variant,
            peer: f.peer.clone(),
            netns: f.netns.clone(),
            count: f.count,
            facts: f.kernel_facts.clone().unwrap_or_default(),
            backed: f.backed.unwrap_or(false),
        }
    }
}

/// The scorecard as text, one line per finding.
pub fn text(rows: &[Row]) -> String {
    rows.iter()
        .map(|r| {
            let facts: Vec<String> = r.facts.iter().map(|(name, n)| format!("{name} {n}")).collect();
            let facts = match (r.backed, facts.is_empty()) {
                (_, true) => "NO KERNEL FACT".to_string(),
                (true, false) => facts.join(", "),
                (false, false) => format!("NOT BACKED by {}", facts.join(", ")),
            };
            format!("      {} / {} {} ({}): {} <- {facts}\n", r.kind, r.variant, r.peer, r.netns, r.count)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{FlowFacts, syn_funnel::Funnel};

    fn finding(kind: &'static str, variant: &'static str, drops: Option<&[(&str, u64)]>) -> Finding {
        Finding {
            kind,
            variant,
            peer: "192.0.2.2".into(),
            netns: "srv".into(),
            count: 1,
            listener_port: (kind == "unanswered_syns").then_some(443),
            drops: drops.map(|d| d.iter().map(|(n, c)| (n.to_string(), *c)).collect()),
            ..Finding::default()
        }
    }

    fn flow(kind: &'static str, dupacks_out: u64) -> Finding {
        Finding {
            count: 500,
            flow: Some(FlowFacts {
                peer_port: 40000,
                oow_in_per_s: 100.0,
                dupacks_out_per_s: 100.0,
                dupacks_suppressed_per_s: 0.0,
                dupacks_out,
                dupacks_suppressed: 0,
                why: "sequence",
                srtt_us: None,
                segments_per_round_trip: None,
                started: String::new(),
                ended: None,
                sources: BTreeMap::new(),
            }),
            ..finding(kind, "sequence", None)
        }
    }

    fn funnel_row(peer: &str, port: u16, syns: u64) -> FunnelRow {
        // Field by field: the row's namespace inode is private to the funnel.
        let mut row = FunnelRow::default();
        (row.peer, row.netns, row.port) = (peer.into(), "srv".into(), port);
        row.funnel = Funnel { syns, ..Funnel::default() };
        row
    }

    fn scored(mut findings: Vec<Finding>, counters: &[(&str, u64)], syn_funnel: &[FunnelRow]) -> Vec<Row> {
        let counters = BTreeMap::from([(
            "srv".to_string(),
            counters.iter().map(|(n, v)| (n.to_string(), *v)).collect::<Counters>(),
        )]);
        let reasons_of = |peer: &str, _: &str| {
            if peer == "192.0.2.2" { BTreeMap::from([("TCP_CSUM".to_string(), 1)]) } else { BTreeMap::new() }
        };
        score(&mut findings, &KernelSaid { counters: &counters, reasons_of: &reasons_of, syn_funnel });
        findings.iter().map(Row::of).collect()
    }

    #[test]
    fn each_finding_is_backed_by_what_its_claim_needs_from_the_kernel_or_not_at_all() {
        let rows = scored(
            vec![
                finding("paws_rejections", "established", None),
                finding("unanswered_syns", "bad_checksum", Some(&[("TCP_CSUM", 1), ("TcpInCsumErrors", 1)])),
                finding("unanswered_syns", "unknown", Some(&[])),
                finding("unanswered_syns", "listen_overflow", Some(&[("TcpExtListenOverflows", 2)])),
                finding("nat_timestamp_clocks", "several_hosts", None),
            ],
            &[("TcpInCsumErrors", 1), ("TcpExtPAWSEstab", 3)],
            &[funnel_row("192.0.2.2", 443, 4), funnel_row("192.0.2.2", 80, 2), funnel_row("192.0.2.9", 443, 7)],
        );
        // The overflow the finding names never moved in the namespace's counters.
        assert_eq!(rows.iter().map(|r| r.backed).collect::<Vec<_>>(), [true, true, true, false, true], "{rows:#?}");
        assert_eq!(rows[0].facts["TcpExtPAWSEstab"], 3);
        assert_eq!((rows[1].facts["TCP_CSUM"], rows[1].facts["TcpInCsumErrors"], rows[1].facts[SYNS_COUNTED]), (1, 1, 4));
        assert_eq!(rows[2].facts, BTreeMap::from([(SYNS_COUNTED.to_string(), 4)]));
        assert_eq!(rows[4].facts[SYNS_COUNTED], 6, "a clock proof counts the peer's SYNs to every port");
        assert!(text(&rows).contains("listen_overflow 192.0.2.2 (srv): 1 <- NOT BACKED by"), "{}", text(&rows));
    }

    #[test]
    fn syn_findings_without_syns_counted_have_nothing_behind_them() {
        let rows = scored(
            vec![finding("unanswered_syns", "unknown", Some(&[])), finding("nat_timestamp_clocks", "several_hosts", None)],
            &[],
            &[funnel_row("192.0.2.9", 443, 7)],
        );
        assert_eq!(rows.iter().map(|r| r.backed).collect::<Vec<_>>(), [false, false], "{rows:#?}");
        assert!(text(&rows).contains("unanswered_syns / unknown 192.0.2.2 (srv): 1 <- NO KERNEL FACT"), "{}", text(&rows));
    }

    #[test]
    fn a_loop_needs_segments_in_and_answers_out_a_flood_only_segments_in() {
        let busy = [(SEGMENTS_IN, 900), (SEGMENTS_OUT, 880)];
        let rows = scored(vec![flow("ack_loop", 480), flow("ack_loop", 0), flow("out_of_window_flood", 0)], &busy, &[]);
        assert_eq!(rows.iter().map(|r| r.backed).collect::<Vec<_>>(), [true, false, true], "{rows:#?}");
        assert_eq!((rows[0].facts[OOW_COUNTED], rows[0].facts[DUPACKS_COUNTED], rows[0].facts[SEGMENTS_IN]), (500, 480, 900));
        // A namespace whose counters never moved: the per-flow counts alone prove nothing.
        let quiet = scored(vec![flow("ack_loop", 480), flow("out_of_window_flood", 0)], &[], &[]);
        assert_eq!(quiet.iter().map(|r| r.backed).collect::<Vec<_>>(), [false, false], "{quiet:#?}");
    }
}
