//! Helpers for the real-kernel integration tests in `tests/`: run the `netdiag` binary the way
//! a user does, wait until it traces, stop it with Ctrl-C (SIGINT) and read its JSON report.
use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::Duration,
};

pub mod agent;

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

/// The binary under test: `NETDIAG_BIN` (set by `cargo xtask test` and the VM bench), else the
/// workspace's debug build.
pub fn netdiag_bin() -> String {
    std::env::var("NETDIAG_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/debug/netdiag").to_string())
}

/// Integration tests need root: fail loudly rather than pass without testing anything.
pub fn require_root() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "the integration tests load eBPF programs and create namespaces: run them as root");
}

/// What `netdiag diagnose` prints on stderr once every hook is attached (`session::READY_LINE`).
pub const READY_LINE: &str = "netdiag: tracing started";

/// A running `netdiag diagnose --json`.
pub struct Diagnose {
    child: Child,
    stderr_lines: mpsc::Receiver<String>,
}

impl Diagnose {
    /// Starts tracing and returns once netdiag says every hook is attached.
    pub fn start(extra_args: &[&str]) -> Result<Diagnose> {
        let mut args = vec!["diagnose", "--json", "--duration", "300"];
        args.extend_from_slice(extra_args);
        Diagnose::start_command(&args)
    }

    /// Starts any tracing subcommand (`peer IP --json ...`) and returns once it traces.
    pub fn start_command(args: &[&str]) -> Result<Diagnose> {
        let mut command = Command::new(netdiag_bin());
        command.args(args);
        Diagnose::spawn(command)
    }

    /// Starts `command`, a netdiag made ready to run (arguments, `pre_exec`), and returns once
    /// it traces.
    pub fn spawn(mut command: Command) -> Result<Diagnose> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", netdiag_bin()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[netdiag] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.starts_with(READY_LINE) => break,
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait()?;
                    bail!("netdiag did not start tracing ({status})");
                }
            }
        }
        Ok(Diagnose { child, stderr_lines: rx })
    }

    /// Waits until netdiag prints a stderr line `wanted` accepts, at most until `deadline`.
    pub fn wait_for_line(&self, deadline: std::time::Instant, wanted: impl Fn(&str) -> bool) -> Result<String> {
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return Ok(line),
                Ok(_) => continue,
                Err(_) => bail!("netdiag printed no such line in time"),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn end_with(mut self, signal: i32) -> Result<Ended> {
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let mut stdout = String::new();
        self.child.stdout.take().context("no stdout")?.read_to_string(&mut stdout)?;
        let status = self.child.wait()?;
        Ok(Ended { status, stdout, stderr: self.stderr_lines.try_iter().collect() })
    }

    /// Ctrl-C, then the report it prints.
    pub fn finish(self) -> Result<Value> {
        let ended = self.end_with(libc::SIGINT)?;
        if !ended.status.success() {
            bail!("netdiag exited with {}: {}", ended.status, ended.stderr.join("\n"));
        }
        let report: Value =
            serde_json::from_str(&ended.stdout).with_context(|| format!("netdiag printed no JSON: {}", ended.stdout))?;
        let unbacked = unbacked_findings(&report);
        ensure!(unbacked.is_empty(), "findings the kernel's facts do not back (the scorecard): {unbacked:#?}");
        Ok(report)
    }
}

/// The scorecard every test holds a report to: findings whose claim the kernel facts it needs
/// do not back (`backed` is not true), each with the facts it had.
pub fn unbacked_findings(report: &Value) -> Vec<&Value> {
    report["findings"].as_array().into_iter().flatten().filter(|f| f["backed"] != true).collect()
}

/// The peak resident memory (VmHWM) of a process, followed from a thread until stopped, so the
/// last moments before it exits (building its report) are included.
pub struct PeakRss {
    peak_kib: std::sync::Arc<std::sync::atomic::AtomicU64>,
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sampler: std::thread::JoinHandle<()>,
}

impl PeakRss {
    pub fn watch(pid: u32) -> PeakRss {
        use std::sync::atomic::Ordering;
        let peak_kib = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (peak, run) = (peak_kib.clone(), running.clone());
        let sampler = std::thread::spawn(move || {
            while run.load(Ordering::Relaxed) {
                if let Some(kib) = peak_rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        PeakRss { peak_kib, running, sampler }
    }

    /// The highest VmHWM seen, in KiB.
    pub fn stop(self) -> u64 {
        use std::sync::atomic::Ordering;
        self.running.store(false, Ordering::Relaxed);
        let _ = self.sampler.join();
        self.peak_kib.load(Ordering::Relaxed)
    }
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// How a `netdiag diagnose` process ended and what it printed.
pub struct Ended {
    pub status: ExitStatus,
    pub stdout: String,
    /// Its stderr lines after the ready line.
    pub stderr: Vec<String>,
}

/// Findings of one kind about one peer.
pub fn findings_for<'a>(report: &'a Value, kind: &str, peer: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .map(|all| all.iter().filter(|f| f["kind"] == kind && f["peer"] == peer).collect())
        .unwrap_or_default()
}

/// A counter's session delta in one namespace, as netdiag reports it (0 if it did not move).
pub fn counter(report: &Value, netns: &str, name: &str) -> u64 {
    report["counters"][netns][name].as_u64().unwrap_or(0)
}

/// A counter's absolute value in a named namespace, read the way an operator would: with
/// `nstat` inside it.
pub fn nstat(netns: &str, name: &str) -> Result<u64> {
    let out = Command::new("ip").args(["netns", "exec", netns, "nstat", "-a", "-s", "-z", name]).output()?;
    if !out.status.success() {
        bail!("nstat in {netns}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    text.lines()
        .find_map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next() == Some(name)).then(|| cols.next()?.parse().ok())?
        })
        .with_context(|| format!("nstat printed no {name} in {netns}: {text}"))
}

/// The counter a PAWS rejection in TIME_WAIT raises: `TcpExtPAWSTimewait` since 6.16, before
/// it `TcpExtPAWSEstab`.
pub fn time_wait_counter() -> &'static str {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    if netstat.split_whitespace().any(|name| name == "PAWSTimewait") { "TcpExtPAWSTimewait" } else { "TcpExtPAWSEstab" }
}
