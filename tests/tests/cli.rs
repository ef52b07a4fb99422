//! The command line's contract for bad input and missing privileges.
use std::process::Command;

use netdiag_tests::{netdiag_bin, require_root};

#[test]
fn a_peer_filter_that_does_not_parse_is_a_usage_error() {
    let out = Command::new(netdiag_bin()).args(["diagnose", "--peer", "198.51.100"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not an IP address or CIDR"), "{err}");
}

#[test]
fn a_zero_duration_is_a_usage_error() {
    let out = Command::new(netdiag_bin()).args(["diagnose", "--duration", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Without privileges netdiag says in one line what is missing, exits 2, and prints no backtrace.
#[test]
fn without_privileges_it_says_what_is_missing() {
    require_root();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(netdiag_bin())
        .args(["diagnose", "--duration", "1"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("needs root"), "{err}");
}

#[test]
fn an_unknown_namespace_is_a_usage_error() {
    let out = Command::new(netdiag_bin()).args(["diagnose", "--netns", "no-such-namespace"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no network namespace named `no-such-namespace`"), "{err}");
}
