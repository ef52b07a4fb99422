//! Session lifecycle on the real kernel: however a `netdiag diagnose` process ends (Ctrl-C,
//! SIGTERM, SIGKILL), no BPF program or link it attached outlives it, and two sessions can run
//! side by side.
//!
//! What a process attached is read from its own file descriptors (`/proc/<pid>/fdinfo` names the
//! kernel id of every BPF program and link fd), so programs of other tools, or of netdiag runs in
//! concurrent test processes, never count. `bpftool` lists what the kernel still holds.
use std::{
    collections::BTreeSet,
    os::unix::process::ExitStatusExt,
    process::{Command, ExitStatus},
    time::{Duration, Instant},
};

use netdiag_tests::{Diagnose, require_root};
use serde_json::Value;

/// Kernel ids of BPF programs and links.
#[derive(Debug, Default, PartialEq)]
struct BpfIds {
    progs: BTreeSet<u64>,
    links: BTreeSet<u64>,
}

impl BpfIds {
    /// The programs and links process `pid` holds open.
    fn held_by(pid: u32) -> BpfIds {
        let mut ids = BpfIds::default();
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
            let fd = fd.unwrap();
            // An fd closed between listing and reading is not a BPF object the process holds.
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let (set, field) = match target.to_str() {
                Some("anon_inode:bpf-prog") => (&mut ids.progs, "prog_id:"),
                Some("anon_inode:bpf_link") => (&mut ids.links, "link_id:"),
                _ => continue,
            };
            let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy()))
            else {
                continue;
            };
            let id = info.lines().find_map(|l| l.strip_prefix(field)).unwrap_or_else(|| panic!("no {field} in {info}"));
            set.insert(id.trim().parse().unwrap());
        }
        ids
    }

    /// Every program and link the kernel has loaded, by `bpftool`.
    fn in_kernel() -> BpfIds {
        BpfIds { progs: bpftool_ids("prog"), links: bpftool_ids("link") }
    }

    /// Those of `self` that are also in `other`.
    fn common(&self, other: &BpfIds) -> BpfIds {
        BpfIds {
            progs: self.progs.intersection(&other.progs).copied().collect(),
            links: self.links.intersection(&other.links).copied().collect(),
        }
    }
}

fn bpftool_ids(object: &str) -> BTreeSet<u64> {
    let out = Command::new("bpftool").args([object, "show", "--json"]).output().expect("run bpftool");
    assert!(out.status.success(), "bpftool {object} show: {}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    listed.as_array().unwrap().iter().map(|o| o["id"].as_u64().unwrap()).collect()
}

/// A running `netdiag diagnose` that has said it is tracing, with what it attached.
struct Session {
    run: Diagnose,
    attached: BpfIds,
}

impl Session {
    /// Starts netdiag, waits for its ready line and checks its programs and links are in the kernel.
    fn start() -> Session {
        let run = Diagnose::start(&[]).unwrap();
        let attached = BpfIds::held_by(run.pid());
        assert!(!attached.links.is_empty(), "netdiag says it traces but holds no BPF link: {attached:?}");
        assert_eq!(attached.common(&BpfIds::in_kernel()), attached, "what netdiag holds is loaded and attached");
        Session { run, attached }
    }

    fn end_with(self, signal: i32) -> Ended {
        let ended = self.run.end_with(signal).unwrap();
        Ended { status: ended.status, stdout: ended.stdout, stderr: ended.stderr, attached: self.attached }
    }
}

/// A finished session.
struct Ended {
    status: ExitStatus,
    stdout: String,
    stderr: Vec<String>,
    attached: BpfIds,
}

impl Ended {
    /// The process exited 0 and printed a report of a session shorter than `--duration`.
    fn report(&self) -> Value {
        assert!(self.status.success(), "netdiag exited with {}: {}", self.status, self.stderr.join("\n"));
        let report: Value =
            serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("netdiag printed no JSON ({e}): {}", self.stdout));
        assert!(report["hooks"].as_array().is_some_and(|h| !h.is_empty()), "{report:#}");
        let duration = report["duration_s"].as_f64().unwrap();
        assert!(duration < 60.0, "the signal ended the session early, not the 300 s deadline: {duration} s");
        report
    }

    /// Nothing the process attached is left in the kernel. Freeing may lag the exit a little
    /// (deferred link release), so this polls for a few seconds.
    fn assert_nothing_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.attached.common(&BpfIds::in_kernel());
            if left == BpfIds::default() {
                return;
            }
            assert!(Instant::now() < deadline, "still in the kernel after netdiag exited: {left:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn sigint_ends_the_session_with_a_report_and_detaches() {
    require_root();
    let ended = Session::start().end_with(libc::SIGINT);
    ended.report();
    ended.assert_nothing_left();
}

#[test]
fn sigterm_ends_the_session_with_a_report_and_detaches() {
    require_root();
    let ended = Session::start().end_with(libc::SIGTERM);
    ended.report();
    ended.assert_nothing_left();
}

#[test]
fn sigkill_leaves_nothing_attached_and_the_next_session_starts() {
    require_root();
    let killed = Session::start().end_with(libc::SIGKILL);
    assert_eq!(killed.status.signal(), Some(libc::SIGKILL), "{}", killed.status);
    killed.assert_nothing_left();

    let next = Session::start().end_with(libc::SIGINT);
    next.report();
    next.assert_nothing_left();
}

#[test]
fn two_sessions_at_once_both_attach_and_report() {
    require_root();
    let first = Session::start();
    let second = Session::start();
    assert_eq!(first.attached.common(&second.attached), BpfIds::default(), "each session attaches its own programs");
    let (first, second) = (first.end_with(libc::SIGINT), second.end_with(libc::SIGINT));
    first.report();
    second.report();
    first.assert_nothing_left();
    second.assert_nothing_left();
}
