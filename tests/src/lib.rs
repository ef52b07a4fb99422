//! Helpers for the real-kernel integration tests in `tests/`: run the `netdiag` binary the way
//! a user does, wait until it traces, stop it with Ctrl-C (SIGINT) and read its JSON report.
use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
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
        let mut child = Command::new(netdiag_bin())
            .args(["diagnose", "--json", "--duration", "300"])
            .args(extra_args)
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
        serde_json::from_str(&ended.stdout).with_context(|| format!("netdiag printed no JSON: {}", ended.stdout))
    }
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
