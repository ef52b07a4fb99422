//! netdiag when things are missing or slow: a stalled reader, no BTF, no drop tracepoint. Each
//! is made real for netdiag alone: the process is stopped with SIGSTOP, or runs in a private
//! mount namespace where the kernel file it needs is hidden.
use std::{process::Command, time::Duration};

use netdiag::scenario::{FloodSpec, FloodTopology, syn_flood};
use netdiag_tests::{Diagnose, netdiag_bin, nstat, require_root};

/// Runs `netdiag ARGS` in a private mount namespace after `mount_command` (sh syntax) hid
/// something; returns the exit code and stderr.
fn run_with_hidden(mount_command: &str, args: &str) -> (Option<i32>, String) {
    let script = format!("{mount_command} && exec {} {args}", netdiag_bin());
    let out = Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// More new peers than the ring buffer holds samples for arrive while netdiag is stopped
/// (SIGSTOP): samples are lost and reported as such, while the counts, kept in a kernel map,
/// stay exact — the one real client among them has exactly the count the server kernel saw.
#[test]
fn a_stalled_reader_loses_samples_but_never_counts() {
    require_root();
    let topo = FloodTopology::new("stall").unwrap();
    let rsts_before = nstat(&topo.server_ns, "TcpOutRsts").unwrap();
    let tracer = Diagnose::start(&["--reason", "NO_SOCKET", "--netns", &topo.server_ns]).unwrap();
    unsafe { libc::kill(tracer.pid() as i32, libc::SIGSTOP) };
    // A sample per new peer; 256 KiB of ring at 88 bytes a record holds under 3000.
    let spec = FloodSpec { sources: 6000, heavy_every: 64, time_limit: Duration::from_secs(30) };
    let run = syn_flood(&topo, spec);
    unsafe { libc::kill(tracer.pid() as i32, libc::SIGCONT) };
    let run = run.unwrap();
    let report = tracer.finish().unwrap();
    let answered = nstat(&topo.server_ns, "TcpOutRsts").unwrap() - rsts_before;

    let lost = report["lost_events"].as_u64().unwrap();
    assert!(lost >= 2000, "the stalled reader's losses are reported: {lost}; probe_stats {:#}", report["probe_stats"]);
    let peers = report["peers"].as_array().unwrap();
    let heavy = peers.iter().find(|p| p["addr"] == run.heavy_addr.to_string().as_str()).unwrap();
    assert_eq!(heavy["by_reason"]["NO_SOCKET"].as_u64(), Some(answered), "counts stay exact whatever was lost");
    let spoofed: u64 = peers.iter().filter(|p| p["addr"] != run.heavy_addr.to_string().as_str()).map(|p| p["by_reason"]["NO_SOCKET"].as_u64().unwrap()).sum();
    assert_eq!(spoofed, run.spoofed_sent, "one drop counted per spoofed SYN, samples lost or not");
}

/// No usable BTF: one line naming the file and what to do, exit status 2.
#[test]
fn without_btf_it_says_what_is_missing_in_one_line() {
    require_root();
    let (code, stderr) = run_with_hidden("mount --bind /dev/null /sys/kernel/btf/vmlinux", "diagnose --duration 1");
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/sys/kernel/btf/vmlinux") && stderr.contains("CONFIG_DEBUG_INFO_BTF"), "{stderr}");
    assert!(stderr.contains("netdiag counters"), "the counters-only way is offered: {stderr}");
}

/// No skb:kfree_skb tracepoint where fentry and kprobes are refused too (this host): nothing can
/// be attached, which is said in one line with every hook's reason, exit status 2. Where a
/// kernel allows function hooks (the guests), diagnose runs with those and `hooks` says why the
/// tracepoint is out.
#[test]
fn without_the_drop_tracepoint_every_refusal_is_named() {
    require_root();
    let hide = "mount -t tmpfs none /sys/kernel/tracing/events/skb";
    let (_, hooks_out) = run_with_hidden(hide, "hooks --json >&2");
    let survey: serde_json::Value = serde_json::from_str(&hooks_out).unwrap_or_else(|e| panic!("{e}: {hooks_out}"));
    // The programs on the drop function need no tracefs entry, nor does the BTF-typed
    // tracepoint (it attaches by BTF); without them nothing serves.
    let paws = survey["hooks"].as_array().unwrap().iter().find(|h| h["name"] == "paws_checks").unwrap();
    if paws["active"] == true {
        assert!(["fentry", "kprobe", "tp_btf"].contains(&paws["backend"].as_str().unwrap()), "{paws:#}");
    } else {
        assert!(paws["detail"].as_str().unwrap().contains("skb:kfree_skb is not available"), "{paws:#}");
    }

    let any_active = survey["hooks"].as_array().unwrap().iter().any(|h| h["active"] == true);
    let (code, stderr) = run_with_hidden(hide, "diagnose --duration 1 --json");
    if any_active {
        assert_eq!(code, Some(0), "{stderr}");
    } else {
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("skb:kfree_skb is not available") && stderr.contains("netdiag counters"), "{stderr}");
    }
}
