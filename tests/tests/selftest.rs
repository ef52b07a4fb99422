//! `netdiag selftest` reproduces every incident on this kernel and says which it can see.
use std::process::Command;

use netdiag_tests::{netdiag_bin, require_root};
use serde_json::Value;

#[test]
fn every_incident_is_seen_or_reported_unsupported_for_a_reason_the_kernel_lacks() {
    require_root();
    let out = Command::new(netdiag_bin()).args(["selftest", "--json"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let outcomes: Value = serde_json::from_str(&stdout).unwrap();
    let outcomes = outcomes.as_array().unwrap();
    assert_eq!(outcomes.len(), 10, "{stdout}");
    let btf = netdiag::btf::Btf::from_sys_fs().unwrap();
    // Where the kernel lacks TCP_RFC7323_TW_PAWS, a function program on
    // tcp_timewait_state_process sees those drops, if the kernel lets one attach.
    let hooks = Command::new(netdiag_bin()).args(["hooks", "--json"]).output().unwrap();
    let hooks: Value = serde_json::from_slice(&hooks.stdout).unwrap();
    let time_wait_hook = hooks["hooks"].as_array().unwrap().iter().any(|h| h["name"] == "paws_time_wait" && h["active"] == true);
    for outcome in outcomes {
        // What the kernel said against what netdiag concluded: no finding without a kernel fact.
        for row in outcome["scorecard"].as_array().unwrap() {
            assert_eq!(row["backed"], true, "{outcome:#}");
        }
        let reason = outcome["reason"].as_str().unwrap();
        let incident = outcome["incident"].as_str().unwrap();
        let kernel_has_it = btf.enum_value("skb_drop_reason", &format!("SKB_DROP_REASON_{reason}")).is_some();
        if reason.starts_with("none") {
            // Seen by the SYN funnel and the namespace's counters, whatever the drop reasons.
            assert_eq!(outcome["status"], "seen", "{outcome:#}");
        } else if incident.contains("real NAT") && !kernel_has_it {
            // Seen where SYNs are counted as they arrive; unsupported where only the listener counts them.
            assert!(outcome["status"] == "seen" || outcome["status"] == "unsupported", "{outcome:#}");
        } else {
            let seen_by_hook = reason == "TCP_RFC7323_TW_PAWS" && time_wait_hook;
            let expected = if kernel_has_it || seen_by_hook { "seen" } else { "unsupported" };
            assert_eq!(outcome["status"], expected, "{outcome:#}");
        }
    }
    assert!(Command::new("ip").args(["netns", "list"]).output().unwrap().stdout.split(|b| *b == b'\n').all(|l| !l.starts_with(b"nd-st")));
}
