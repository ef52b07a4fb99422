//! A running `netdiag agent` for the tests and the soak: its config in a scratch directory, its
//! /metrics read over loopback HTTP, its memory and the BPF objects it holds.
use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::netdiag_bin;

/// What the agent prints on stderr once it serves (`agent::READY_LINE`).
const READY_LINE: &str = "netdiag agent: serving";

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("netdiag-agent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a tool and returns its combined output; fails the test if it exits non-zero.
pub fn checked(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e} (cargo xtask setup installs it)"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

/// Reads the stderr of `child` (piped) on a thread, echoing it, until the agent's ready line:
/// the address it serves. Kills `child` and fails the test if that takes longer than `within`.
pub fn wait_until_serving(child: &mut Child, what: &str, within: Duration) -> SocketAddr {
    let stderr = child.stderr.take().expect("the agent's stderr piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[agent] {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + within;
    let ready = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.starts_with(READY_LINE) => break line,
            Ok(_) => continue,
            Err(_) => {
                let _ = child.kill();
                panic!("{what} did not serve /metrics: {:?}", child.wait());
            }
        }
    };
    // "netdiag agent: serving http://127.0.0.1:PORT/metrics (...)"
    ready.split("http://").nth(1).and_then(|rest| rest.split('/').next()).unwrap().parse().unwrap()
}

/// A running `netdiag agent` with its config in a scratch directory.
pub struct Agent {
    pub child: Child,
    pub addr: SocketAddr,
    pub attached: BpfIds,
}

impl Agent {
    pub fn start(dir: &Path, config: &str) -> Agent {
        let path = dir.join("agent.toml");
        std::fs::write(&path, format!("listen = \"127.0.0.1:0\"\n{config}")).unwrap();
        let mut child = Command::new(netdiag_bin())
            .args(["agent", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let addr = wait_until_serving(&mut child, "the agent", Duration::from_secs(60));
        let attached = BpfIds::held_by(child.id());
        assert!(!attached.links.is_empty(), "the agent serves but holds no BPF link");
        Agent { child, addr, attached }
    }

    pub fn metrics(&self) -> String {
        let (status, body) = http_get(self.addr, "/metrics");
        assert_eq!(status, 200, "{body}");
        body
    }

    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap();
        kib * 1024
    }

    /// SIGTERM: the agent exits 0 and nothing it attached is left in the kernel.
    pub fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the agent exited with {status} on SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.attached.still_in_kernel();
            if left.progs.is_empty() && left.links.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "still in the kernel after the agent exited: {left:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kernel ids of BPF programs and links, as a process's fds name them (fdinfo) and bpftool lists them.
#[derive(Debug, Default)]
pub struct BpfIds {
    pub progs: BTreeSet<u64>,
    pub links: BTreeSet<u64>,
}

impl BpfIds {
    pub fn held_by(pid: u32) -> BpfIds {
        let mut ids = BpfIds::default();
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let (set, field) = match target.to_str() {
                Some("anon_inode:bpf-prog") => (&mut ids.progs, "prog_id:"),
                Some("anon_inode:bpf_link") => (&mut ids.links, "link_id:"),
                _ => continue,
            };
            let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy())) else {
                continue;
            };
            if let Some(id) = info.lines().find_map(|l| l.strip_prefix(field)) {
                set.insert(id.trim().parse().unwrap());
            }
        }
        ids
    }

    pub fn still_in_kernel(&self) -> BpfIds {
        let listed = |object: &str| -> BTreeSet<u64> {
            let out = checked(Command::new("bpftool").args([object, "show", "--json"]));
            let all: Value = serde_json::from_str(&out).unwrap();
            all.as_array().unwrap().iter().map(|o| o["id"].as_u64().unwrap()).collect()
        };
        BpfIds {
            progs: self.progs.intersection(&listed("prog")).copied().collect(),
            links: self.links.intersection(&listed("link")).copied().collect(),
        }
    }
}

/// A plain HTTP/1.0 GET on loopback; status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

/// One sample of the agent's text exposition: `name{k="v",...} value`.
pub fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let labels = labels.trim_end_matches('}');
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once("=\"")?;
                    Some((k.to_string(), v.trim_end_matches('"').to_string()))
                })
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

pub fn value_of(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text, name)
        .into_iter()
        .find(|(l, _)| labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, v)| v)
}

