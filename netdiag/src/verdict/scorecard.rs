//! A scorecard against the kernel: each finding beside the kernel facts it rests on — counter
//! deltas of its namespace, drop reasons the kernel counted for its peer, packets the kernel
//! programs counted. A finding none of whose facts moved has nothing behind it, and
//! `netdiag selftest` (and the tests) fail it.
use std::collections::BTreeMap;

use serde::Serialize;

use super::{Finding, paws::PAWS_COUNTERS};
use crate::counters::Counters;

/// Counters that move with out-of-window segments and their answers.
const OUT_OF_WINDOW_COUNTERS: &[&str] =
    &["TcpExtBeyondWindow", "TcpExtTCPACKSkippedSeq", "TcpExtTCPACKSkippedPAWS", "TcpExtPAWSEstab"];

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
    /// Some fact moved.
    pub backed: bool,
}

/// The scorecard of `findings`: `counters` by namespace name (the session's deltas),
/// `reasons_of(peer, netns)` the drops the kernel counted for a peer, by reason.
pub fn score(
    findings: &[Finding],
    counters: &BTreeMap<String, Counters>,
    reasons_of: &dyn Fn(&str, &str) -> BTreeMap<String, u64>,
) -> Vec<Row> {
    findings
        .iter()
        .map(|f| {
            let none = Counters::new();
            let ns_counters = counters.get(&f.netns).unwrap_or(&none);
            let by_reason = reasons_of(&f.peer, &f.netns);
            let fact = |name: &str| {
                by_reason.get(name).or_else(|| ns_counters.get(name)).copied().unwrap_or(0)
            };
            let mut facts: BTreeMap<String, u64> = BTreeMap::new();
            match f.kind {
                "paws_rejections" => {
                    facts.extend(PAWS_COUNTERS.iter().map(|c| (c.to_string(), fact(c))));
                    facts.extend(by_reason.iter().filter(|(r, _)| r.contains("RFC7323")).map(|(r, n)| (r.clone(), *n)));
                }
                "unanswered_syns" => {
                    for name in f.drops.iter().flatten().map(|(name, _)| name) {
                        facts.insert(name.clone(), fact(name));
                    }
                }
                "nat_timestamp_clocks" => {
                    let proofs = f.evidence.as_ref().map_or(0, Vec::len) as u64;
                    facts.insert("SYNs sampled as they arrived".into(), if proofs > 0 { f.count } else { 0 });
                }
                "ack_loop" | "out_of_window_flood" => {
                    facts.insert("out-of-window drops counted per flow".into(), f.count);
                    facts.extend(OUT_OF_WINDOW_COUNTERS.iter().map(|c| (c.to_string(), fact(c))));
                }
                _ => {}
            }
            facts.retain(|_, n| *n > 0);
            Row {
                kind: f.kind,
                variant: f.variant,
                peer: f.peer.clone(),
                netns: f.netns.clone(),
                count: f.count,
                backed: !facts.is_empty(),
                facts,
            }
        })
        .collect()
}

/// The scorecard as text, one line per finding.
pub fn text(rows: &[Row]) -> String {
    rows.iter()
        .map(|r| {
            let facts: Vec<String> = r.facts.iter().map(|(name, n)| format!("{name} {n}")).collect();
            let facts = if facts.is_empty() { "NO KERNEL FACT".to_string() } else { facts.join(", ") };
            format!("      {} / {} {} ({}): {} <- {facts}\n", r.kind, r.variant, r.peer, r.netns, r.count)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(kind: &'static str, variant: &'static str, drops: Option<&[(&str, u64)]>) -> Finding {
        Finding {
            kind,
            variant,
            peer: "192.0.2.2".into(),
            netns: "srv".into(),
            count: 1,
            drops: drops.map(|d| d.iter().map(|(n, c)| (n.to_string(), *c)).collect()),
            ..Finding::default()
        }
    }

    #[test]
    fn each_finding_is_backed_by_what_the_kernel_counted_or_not_at_all() {
        let counters = BTreeMap::from([(
            "srv".to_string(),
            Counters::from([("TcpInCsumErrors".into(), 1), ("TcpExtPAWSEstab".into(), 3)]),
        )]);
        let reasons = |peer: &str, _: &str| {
            if peer == "192.0.2.2" { BTreeMap::from([("TCP_CSUM".to_string(), 1)]) } else { BTreeMap::new() }
        };
        let findings = [
            finding("paws_rejections", "established", None),
            finding("unanswered_syns", "bad_checksum", Some(&[("TCP_CSUM", 1), ("TcpInCsumErrors", 1)])),
            finding("unanswered_syns", "unknown", Some(&[])),
            finding("nat_timestamp_clocks", "several_hosts", None),
        ];
        let rows = score(&findings, &counters, &reasons);
        assert_eq!(rows.iter().map(|r| r.backed).collect::<Vec<_>>(), [true, true, false, false], "{rows:#?}");
        assert_eq!(rows[0].facts["TcpExtPAWSEstab"], 3);
        assert_eq!((rows[1].facts["TCP_CSUM"], rows[1].facts["TcpInCsumErrors"]), (1, 1));
        assert!(text(&rows).contains("unanswered_syns / unknown 192.0.2.2 (srv): 1 <- NO KERNEL FACT"), "{}", text(&rows));
    }
}
