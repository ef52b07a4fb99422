//! `netdiag agent` end to end: the real binary traces PAWS incidents and an ACK loop reproduced
//! in namespaces, a real Prometheus server (Debian's package, on loopback, started here) scrapes it and
//! evaluates the shipped alert rules, and what its HTTP API returns is checked against the
//! kernel's own counters. Also: the ops files pass promtool and systemd-analyze, memory stays
//! flat through a stream of distinct peers, and SIGTERM leaves no program or link attached.
use std::{
    collections::BTreeSet,
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use netdiag::scenario::{self, CLIENT_V4, PawsTopology};
use netdiag_tests::{
    agent::{Agent, TempDir, checked, http_get, samples, value_of},
    netdiag_bin, nstat, require_root,
};
use serde_json::Value;

const OPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops");

#[test]
fn ops_files_pass_promtool_and_systemd_analyze() {
    let prometheus = Path::new(OPS).join("prometheus");
    let text = checked(Command::new("promtool").args(["check", "rules"]).arg(prometheus.join("alerts.yml")));
    assert!(text.contains("SUCCESS"), "{text}");
    let text = checked(Command::new("promtool").args(["check", "config"]).arg(prometheus.join("scrape.yml")));
    assert!(text.contains("1 rule files found"), "the scrape config loads the alert rules: {text}");
    // The alerts fire on series shaped like the agent's, for each incident, and only then.
    let text = checked(Command::new("promtool").args(["test", "rules", "alerts_test.yml"]).current_dir(&prometheus));
    assert!(text.contains("SUCCESS"), "{text}");

    // systemd-analyze checks that ExecStart's binary exists: point a copy at the one under test.
    // Any message (an unknown key is only a warning) fails the test.
    let dir = TempDir::new("unit");
    let unit = std::fs::read_to_string(Path::new(OPS).join("netdiag-agent.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/netdiag agent "), "{unit}");
    let copy = dir.0.join("netdiag-agent.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/netdiag", &netdiag_bin())).unwrap();
    let text = checked(Command::new("systemd-analyze").arg("verify").arg(&copy));
    assert!(text.trim().is_empty(), "systemd-analyze verify: {text}");

    // The example config is the defaults, spelled out, and the agent accepts it.
    let example = std::fs::read_to_string(Path::new(OPS).join("netdiag-agent.toml")).unwrap();
    assert_eq!(netdiag::agent::config::Config::parse(&example), Ok(netdiag::agent::config::Config::default()));
}

#[test]
fn a_bad_config_file_is_an_error_naming_the_line() {
    let dir = TempDir::new("badcfg");
    let path = dir.0.join("agent.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\n\n[maps]\npeer_entrys = 100\n").unwrap();
    let out = Command::new(netdiag_bin()).args(["agent", "--config"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}:4:1:", path.display())) && stderr.contains("peer_entrys"), "{stderr}");
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Debian's Prometheus server, on loopback, with its own storage in a scratch directory,
/// scraping the agent and evaluating the shipped rules every second. Killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Prometheus {
    fn start(dir: &Path, agent: SocketAddr) -> Prometheus {
        let rules = Path::new(OPS).join("prometheus/alerts.yml").canonicalize().unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: netdiag\n    static_configs:\n      - targets: [\"{agent}\"]\n",
                rules.display()
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_loopback_port()).parse().unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run prometheus (Debian's prometheus package; cargo xtask setup installs it)");
        let prometheus = Prometheus { child, addr };
        wait_for(Duration::from_secs(60), "prometheus ready", || {
            TcpStream::connect(addr).is_ok() && http_get(addr, "/-/ready").0 == 200
        });
        prometheus
    }

    /// An instant query's result vector: labels and value of each series.
    fn query(&self, expr: &str) -> Vec<(Value, f64)> {
        let (status, body) = http_get(self.addr, &format!("/api/v1/query?query={}", percent_encode(expr)));
        assert_eq!(status, 200, "{expr}: {body}");
        let reply: Value = serde_json::from_str(&body).unwrap();
        reply["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["metric"].clone(), s["value"][1].as_str().unwrap().parse().unwrap()))
            .collect()
    }

    fn alerts(&self) -> Vec<Value> {
        let (status, body) = http_get(self.addr, "/api/v1/alerts");
        assert_eq!(status, 200, "{body}");
        let reply: Value = serde_json::from_str(&body).unwrap();
        reply["data"]["alerts"].as_array().unwrap().clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(timeout: Duration, what: &str, ready: impl FnMut() -> bool) {
    wait_for_else(timeout, ready, || what.to_string());
}

/// As [`wait_for`], the failure message made when it fails (with what was last seen).
fn wait_for_else(timeout: Duration, mut ready: impl FnMut() -> bool, what: impl FnOnce() -> String) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{}: not within {timeout:?}", what());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn kernel_has_reason(reason: &str) -> bool {
    let btf = netdiag::btf::Btf::from_sys_fs().unwrap();
    btf.enum_value("skb_drop_reason", &format!("SKB_DROP_REASON_{reason}")).is_some()
}

/// The PAWS incidents (established, and seed 002's TIME_WAIT reconnect) traced by the agent:
/// Prometheus stores exactly the kernel's counts per peer and variant, the finding gauge and
/// the PAWS alert follow, the JSON lines name the peer, and SIGTERM detaches everything.
#[test]
fn prometheus_scrapes_the_kernel_counts_and_alerts_on_paws() {
    require_root();
    let dir = TempDir::new("prom");
    let topo = PawsTopology::new("agprom").unwrap();
    let jsonl = dir.0.join("findings.jsonl");
    let agent = Agent::start(
        &dir.0,
        // Only this test's server namespace: tests running meanwhile may cause PAWS drops elsewhere.
        &format!(
            "json_lines = \"{}\"\ninterval_s = 0.5\ntop_peers = 3\nbpf_stats = true\n[filters]\nnetns = [\"{}\"]\n",
            jsonl.display(),
            topo.server_ns
        ),
    );
    let prometheus = Prometheus::start(&dir.0, agent.addr);

    let mut expected: Vec<(&str, &str, u64)> = Vec::new();
    let before = nstat(&topo.server_ns, "TcpExtPAWSEstab").unwrap();
    let run = scenario::paws_established(&topo, false, 7).unwrap();
    let by_nstat = nstat(&topo.server_ns, "TcpExtPAWSEstab").unwrap() - before;
    assert_eq!(by_nstat, run.injected);
    expected.push(("established", "TcpExtPAWSEstab", by_nstat));
    if kernel_has_reason("TCP_RFC7323_TW_PAWS") {
        let before = nstat(&topo.server_ns, "TcpExtPAWSTimewait").unwrap();
        let run = scenario::paws_time_wait(&topo).unwrap();
        let by_nstat = nstat(&topo.server_ns, "TcpExtPAWSTimewait").unwrap() - before;
        assert_eq!(by_nstat, run.injected);
        expected.push(("time_wait", "TcpExtPAWSTimewait", by_nstat));
    }

    let client = CLIENT_V4.to_string();
    for (variant, counter, count) in &expected {
        let labels = [("peer", client.as_str()), ("variant", *variant), ("netns", topo.server_ns.as_str())];
        let expr = format!(
            "netdiag_paws_rejections_total{{job=\"netdiag\",peer=\"{client}\",variant=\"{variant}\",netns=\"{}\"}}",
            topo.server_ns
        );
        let seen = std::cell::Cell::new(None);
        wait_for_else(
            Duration::from_secs(30),
            || {
                seen.set(prometheus.query(&expr).first().map(|(_, v)| *v));
                seen.get() == Some(*count as f64)
            },
            || {
                let served = value_of(&agent.metrics(), "netdiag_paws_rejections_total", &labels);
                format!("Prometheus has {expr} = {count} ({counter} by nstat): last seen {:?}, the agent serves {served:?}", seen.get())
            },
        );
        assert_eq!(value_of(&agent.metrics(), "netdiag_paws_rejections_total", &labels), Some(*count as f64));
    }
    let findings = expected.len() as f64;
    let active = "netdiag_findings_active{job=\"netdiag\",kind=\"paws_rejections\"}";
    wait_for(Duration::from_secs(10), &format!("{active} = {findings} in Prometheus"), || {
        let got = prometheus.query(active);
        got.first().is_some_and(|(_, v)| *v == findings)
    });
    let quiet = prometheus.query("netdiag_findings_active{job=\"netdiag\",kind=\"ack_loop\"}");
    assert_eq!(quiet.first().map(|(_, v)| *v), Some(0.0), "no ACK loop was reproduced");
    // The shipped rule matches what the agent exports (pending for its `for:` minute, then firing).
    wait_for(Duration::from_secs(20), "NetdiagPawsRejections alert", || {
        prometheus.alerts().iter().any(|a| {
            a["labels"]["alertname"] == "NetdiagPawsRejections" && (a["state"] == "pending" || a["state"] == "firing")
        })
    });
    assert!(!prometheus.alerts().iter().any(|a| a["labels"]["alertname"] == "NetdiagAckLoop"));
    // The agent's own cost: memory, and the kernel's accounting of the program that saw the drops
    // (on the BTF-typed tracepoint, else the raw or the perf one).
    for expr in [
        "netdiag_process_resident_memory_bytes{job=\"netdiag\"}",
        "netdiag_bpf_program_runs_total{job=\"netdiag\",program=~\"on_drop_(btf|raw|perf)\"}",
        "netdiag_bpf_program_run_time_seconds_total{job=\"netdiag\",program=~\"on_drop_(btf|raw|perf)\"}",
    ] {
        let own = prometheus.query(expr);
        assert!(own.first().is_some_and(|(_, v)| *v > 0.0), "{expr}: {own:?}");
    }

    // One "open" line per finding, naming the client, with the diagnose fields.
    let text = std::fs::read_to_string(&jsonl).unwrap();
    assert_eq!(std::fs::metadata(&jsonl).unwrap().permissions().mode() & 0o777, 0o600);
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (variant, _, count) in &expected {
        let about: Vec<&Value> = lines.iter().filter(|l| l["variant"] == *variant && l["peer"] == client.as_str()).collect();
        assert_eq!(about.iter().filter(|l| l["event"] == "open").count(), 1, "{text}");
        assert!(about.iter().all(|l| l["kind"] == "paws_rejections" && l["netns"] == topo.server_ns.as_str()), "{text}");
        assert!(about.iter().all(|l| l["count"].as_u64().unwrap() <= *count && !l["advice"].as_str().unwrap().is_empty()));
    }
    agent.stop();
}

/// A stream of distinct peers (one rejected segment each, from 1600 IPv6 addresses) through a
/// kernel map of 256 entries and `top_peers = 5`: the agent's RSS stays flat after the first
/// round, per-peer series stay within the bound, the rest adds up in peer="other", and the map
/// evicts rather than grows.
#[test]
fn memory_and_series_stay_bounded_with_many_distinct_peers() {
    require_root();
    if !kernel_has_reason("TCP_RFC7323_TSECR") {
        eprintln!("this kernel has no TCP_RFC7323_TSECR drop reason: no per-peer drops to count");
        return;
    }
    const ROUND: u16 = 400;
    let dir = TempDir::new("rss");
    let topo = PawsTopology::new("agrss").unwrap();
    let agent = Agent::start(
        &dir.0,
        &format!(
            "interval_s = 0.5\ntop_peers = 5\nseries_expiry_s = 2\nfinding_close_after_s = 1\n\
             [maps]\npeer_entries = 256\n[filters]\nnetns = [\"{}\"]\n",
            topo.server_ns
        ),
    );
    let settle = || std::thread::sleep(Duration::from_secs(3));
    let mut rss = Vec::new();
    for round in 0..4u16 {
        let run = scenario::paws_tsecr_from_many(&topo, round * ROUND, ROUND).unwrap();
        assert_eq!(run.injected, u64::from(ROUND));
        settle();
        rss.push(agent.rss_bytes());
        let text = agent.metrics();
        let series = samples(&text, "netdiag_paws_rejections_total");
        let per_peer: BTreeSet<&str> =
            series.iter().filter_map(|(l, _)| l.get("peer").map(String::as_str)).filter(|p| *p != "other").collect();
        assert!(per_peer.len() <= 5, "{} per-peer series: {per_peer:?}", per_peer.len());
        let other = value_of(&text, "netdiag_paws_rejections_total", &[("peer", "other")]).unwrap_or(0.0);
        assert!(other > 0.0, "the peers beyond the top 5 add up in peer=\"other\": {series:?}");
        let entries = value_of(&text, "netdiag_map_entries", &[("map", "PEER_DROPS")]).unwrap();
        assert!(entries <= 256.0, "{entries} entries in a 256-entry map");
        // The agent's own tables follow the kernel map, not the number of peers seen so far.
        for table in ["findings", "samples"] {
            let n = value_of(&text, "netdiag_agent_table_entries", &[("table", table)]).unwrap();
            assert!(n <= 256.0, "{n} entries in the agent's {table} table after {} peers", (round + 1) * ROUND);
        }
    }
    let text = agent.metrics();
    let evicted = value_of(&text, "netdiag_map_evictions_total", &[("map", "PEER_DROPS")]).unwrap();
    assert!(evicted > 0.0, "1600 peers through a 256-entry map evict: {text}");
    eprintln!("agent RSS after each round of {ROUND} new peers: {rss:?}");
    let growth = rss[1..].iter().max().unwrap().saturating_sub(rss[0]);
    assert!(growth < 1 << 20, "RSS grew by {growth} bytes after the first round: {rss:?}");
    agent.stop();
}

/// Once attached, every thread of the agent keeps only CAP_BPF, CAP_SYS_ADMIN and CAP_SYS_PTRACE,
/// in its effective and permitted sets and in the bounding set (so nothing it runs regains the
/// rest), and it still does its work: the PAWS count read through a namespace it enters.
#[test]
fn after_attaching_the_agent_keeps_only_the_capabilities_it_needs() {
    require_root();
    const KEPT: u64 = 1 << 19 | 1 << 21 | 1 << 39;
    let dir = TempDir::new("caps");
    let topo = PawsTopology::new("agcaps").unwrap();
    let agent = Agent::start(&dir.0, &format!("interval_s = 0.5\n[filters]\nnetns = [\"{}\"]\n", topo.server_ns));
    let tasks: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{}/task", agent.child.id()))
        .unwrap()
        .map(|t| t.unwrap().path().join("status"))
        .collect();
    for status in &tasks {
        let text = std::fs::read_to_string(status).unwrap();
        for set in ["CapEff:", "CapPrm:", "CapBnd:", "CapAmb:"] {
            let mask = text.lines().find_map(|l| l.strip_prefix(set)).map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap()).unwrap();
            assert_eq!(mask & !KEPT, 0, "{} {set} {mask:#x}", status.display());
        }
    }
    let run = scenario::paws_established(&topo, false, 3).unwrap();
    let labels = [("peer", "198.51.100.2"), ("variant", "established")];
    let deadline = Instant::now() + Duration::from_secs(10);
    while value_of(&agent.metrics(), "netdiag_paws_rejections_total", &labels) != Some(run.injected as f64) {
        assert!(Instant::now() < deadline, "no PAWS count after dropping capabilities: {}", agent.metrics());
        std::thread::sleep(Duration::from_millis(200));
    }
    agent.stop();
}

/// An ACK loop between two namespaces (the shaped loop of the tests, 4 s): Prometheus gets the
/// loop's counter for both ends, the ack_loop finding gauge opens and the shipped NetdiagAckLoop
/// rule goes pending, and the JSON lines open a finding per end with the flow's fields.
#[test]
fn prometheus_sees_an_ack_loop_from_both_ends_and_alerts() {
    require_root();
    let dir = TempDir::new("loop");
    let topo = scenario::LoopTopology::new("agloop").unwrap();
    let jsonl = dir.0.join("findings.jsonl");
    let agent = Agent::start(
        &dir.0,
        &format!(
            "json_lines = \"{}\"\ninterval_s = 0.5\n[filters]\nnetns = [\"{}\", \"{}\"]\n",
            jsonl.display(),
            topo.client_ns,
            topo.server_ns
        ),
    );
    let prometheus = Prometheus::start(&dir.0, agent.addr);
    let (run, _) = scenario::start_ack_loop(&topo, Duration::from_secs(4)).unwrap().finish().unwrap();

    for (peer, netns) in [(run.client.ip(), &topo.server_ns), (run.server.ip(), &topo.client_ns)] {
        let expr = format!("netdiag_ack_loop_total{{job=\"netdiag\",peer=\"{peer}\",netns=\"{netns}\"}}");
        wait_for(Duration::from_secs(30), &format!("{expr} > 0 in Prometheus"), || {
            prometheus.query(&expr).first().is_some_and(|(_, v)| *v > 0.0)
        });
    }
    let active = "netdiag_findings_active{job=\"netdiag\",kind=\"ack_loop\"}";
    wait_for(Duration::from_secs(10), &format!("{active} = 2 in Prometheus"), || {
        prometheus.query(active).first().is_some_and(|(_, v)| *v == 2.0)
    });
    wait_for(Duration::from_secs(20), "NetdiagAckLoop alert", || {
        prometheus.alerts().iter().any(|a| a["labels"]["alertname"] == "NetdiagAckLoop" && (a["state"] == "pending" || a["state"] == "firing"))
    });

    let text = std::fs::read_to_string(&jsonl).unwrap();
    let opened: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["kind"] == "ack_loop" && l["event"] == "open")
        .collect();
    assert_eq!(opened.len(), 2, "one per end: {text}");
    for line in &opened {
        assert!(line["oow_in_per_s"].as_f64().unwrap() > 0.0 && line["dupacks_out_per_s"].as_f64().unwrap() > 0.0, "{line:#}");
        assert!(line["started"].as_str().is_some_and(|s| !s.is_empty()), "{line:#}");
    }
    agent.stop();
}
