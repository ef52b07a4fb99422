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
    assert_eq!(outcomes.len(), 5, "{stdout}");
    let btf = netdiag::btf::Btf::from_sys_fs().unwrap();
    for outcome in outcomes {
        let reason = outcome["reason"].as_str().unwrap();
        let kernel_has_it = btf.enum_value("skb_drop_reason", &format!("SKB_DROP_REASON_{reason}")).is_some();
        let expected = if kernel_has_it { "seen" } else { "unsupported" };
        assert_eq!(outcome["status"], expected, "{outcome:#}");
    }
    assert!(Command::new("ip").args(["netns", "list"]).output().unwrap().stdout.split(|b| *b == b'\n').all(|l| !l.starts_with(b"nd-st")));
}
