//! The operator commands end to end: the real `netdiag counters`, `check` and `explain`
//! binaries against real namespaces, with `nstat` as the reference for counters.
use std::{
    io::{BufRead, BufReader, Read},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use netdiag::{
    netns,
    operator::counters::COUNTING_LINE,
    scenario::{self, Lab, PawsTopology},
};
use netdiag_tests::{netdiag_bin, nstat, require_root};
use serde_json::Value;

/// Longest any of these commands may run before the test gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

fn netdiag(args: &[&str]) -> Output {
    run(Command::new(netdiag_bin()).args(args))
}

fn run(command: &mut Command) -> Output {
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start netdiag");
    finish(child)
}

/// Waits for `child` and collects its output, killing it if it outlives `COMMAND_TIMEOUT`.
fn finish(child: Child) -> Output {
    let pid = child.id() as i32;
    let (done, outcome) = mpsc::channel();
    // Reading the pipes while waiting, so a chatty child cannot block on a full pipe.
    std::thread::spawn(move || done.send(child.wait_with_output()));
    match outcome.recv_timeout(COMMAND_TIMEOUT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // SAFETY: the child is not reaped yet, so its pid is still ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("netdiag did not finish within {COMMAND_TIMEOUT:?}");
        }
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("no JSON ({e}): {}{}", stdout(out), stderr(out)))
}

/// The row for one sysctl in `check --json` output.
fn sysctl<'a>(report: &'a Value, netns: &str, name: &str) -> &'a Value {
    let rows = report["namespaces"][netns]["sysctls"].as_array().unwrap_or_else(|| panic!("no {netns}: {report:#}"));
    rows.iter().find(|row| row["name"] == name).unwrap_or_else(|| panic!("no {name}: {report:#}"))
}

/// `counters` reads the same numbers as `nstat` while a real PAWS incident runs in a namespace.
#[test]
fn counters_match_nstat_while_paws_drops_happen() {
    require_root();
    let topo = PawsTopology::new("opcount").unwrap();
    let srv = topo.server_ns.clone();
    let before = nstat(&srv, "TcpExtPAWSEstab").unwrap();

    let mut counting = Command::new(netdiag_bin())
        .args(["counters", "--netns", &srv, "--json", "--interval", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(counting.stderr.take().unwrap());
    let mut first_line = String::new();
    stderr.read_line(&mut first_line).unwrap();
    assert!(first_line.starts_with(COUNTING_LINE), "{first_line}");
    let started = Instant::now();
    let run = scenario::paws_established(&topo, false, 5).unwrap();
    let scenario_took = started.elapsed();
    let out = finish(counting);
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(out.status.success(), "{rest}");
    let by_nstat = nstat(&srv, "TcpExtPAWSEstab").unwrap() - before;

    assert_eq!(by_nstat, run.injected, "the kernel rejected every injected segment");
    let sample = json(&out);
    assert_eq!(sample["interval_s"], 2.0);
    assert_eq!(sample["namespaces"].as_object().unwrap().len(), 1, "only the namespace asked for: {sample:#}");
    let paws = &sample["namespaces"][srv.as_str()]["TcpExtPAWSEstab"];
    assert_eq!(paws["delta"], by_nstat, "netdiag's delta = nstat's (the scenario took {scenario_took:?}): {sample:#}");
    assert_eq!(paws["group"], "paws");
    assert!(paws["meaning"].as_str().is_some_and(|m| m.contains("timestamp")), "{paws}");
}

#[test]
fn counters_text_says_it_traces_nothing() {
    let out = netdiag(&["counters", "--interval", "0.2", "--count", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.matches("(counters only: no tracing)").count(), 2, "{text}");
    assert!(text.contains("sample 2 of 2") && text.contains("namespace root\n"), "{text}");
}

#[test]
fn an_unknown_namespace_is_a_usage_error() {
    for command in ["counters", "check"] {
        let out = netdiag(&[command, "--netns", "no-such-netdiag-namespace"]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        assert!(stderr(&out).contains("no network namespace is called `no-such-netdiag-namespace`"));
        assert!(stdout(&out).is_empty());
    }
}

/// A namespace without the duplicate-ACK limiter is critical; a fresh one is all ok.
#[test]
fn check_rates_the_namespace_it_is_pointed_at() {
    require_root();
    let mut lab = Lab::new("opcheck").unwrap();
    let loop_prone = lab.add_ns("noratelim").unwrap();
    let fresh = lab.add_ns("fresh").unwrap();
    lab.sysctl(&loop_prone, "net.ipv4.tcp_invalid_ratelimit", "0").unwrap();

    let out = netdiag(&["check", "--netns", &loop_prone, "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["status"], "critical");
    let ratelimit = sysctl(&report, &loop_prone, "net.ipv4.tcp_invalid_ratelimit");
    assert_eq!((&ratelimit["value"], &ratelimit["status"]), (&Value::from(0), &Value::from("critical")), "{ratelimit}");
    assert!(ratelimit["advice"].as_str().unwrap().contains("=500"));
    assert_eq!(report["namespaces"].as_object().unwrap().len(), 1, "only the namespace asked for");

    let text = netdiag(&["check", "--netns", &loop_prone]);
    assert_eq!(text.status.code(), Some(3));
    assert!(stdout(&text).contains("CRITICAL  net.ipv4.tcp_invalid_ratelimit = 0"), "{}", stdout(&text));

    // The kernel's defaults for a new namespace deserve no warning.
    let out = netdiag(&["check", "--netns", &fresh, "--json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    let ratelimit = sysctl(&report, &fresh, "net.ipv4.tcp_invalid_ratelimit");
    assert_eq!((&ratelimit["value"], &ratelimit["status"]), (&Value::from(500), &Value::from("ok")));
    assert_eq!(sysctl(&report, &fresh, "net.ipv4.tcp_timestamps")["value"], 1);
    assert_eq!(sysctl(&report, &fresh, "net.ipv4.tcp_tw_recycle")["value"], Value::Null, "gone since 4.12");
    assert_eq!(report["namespaces"][fresh.as_str()]["listeners"], serde_json::json!([]));
}

/// A listener nobody accepts from, with backlog 1 and two connections waiting, is a warning.
#[test]
fn check_warns_about_a_full_accept_queue() {
    require_root();
    let mut lab = Lab::new("opqueue").unwrap();
    let ns = lab.add_ns("srv").unwrap();
    let added = Command::new("ip").args(["-n", &ns, "addr", "add", "192.0.2.1/32", "dev", "lo"]).status().unwrap();
    assert!(added.success());
    let (listener, _clients) = netns::run_in(&lab.ns_path(&ns), || {
        let listener = TcpListener::bind("192.0.2.1:0")?;
        // SAFETY: listen(2) again on a listening socket only changes its backlog.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 1) }, 0);
        let clients = [TcpStream::connect(listener.local_addr()?)?, TcpStream::connect(listener.local_addr()?)?];
        Ok((listener, clients))
    })
    .unwrap();
    let local = listener.local_addr().unwrap().to_string();

    // The handshakes complete in softirq; give the second one a moment to reach the queue.
    let queued_two = |report: &Value| report["namespaces"][ns.as_str()]["listeners"][0]["accept_queue"] == 2;
    let mut checks = (0..50).map(|_| netdiag(&["check", "--netns", &ns, "--json"]));
    let out = checks.find(|out| queued_two(&json(out))).expect("the listener never showed two queued connections");
    assert_eq!(out.status.code(), Some(1), "a warning, nothing critical");
    let report = json(&out);
    let full = &report["namespaces"][ns.as_str()]["listeners"][0];
    assert_eq!(full["local"], local.as_str());
    assert_eq!((&full["backlog"], &full["status"]), (&Value::from(1), &Value::from("warn")), "{full}");
    assert!(full["why"].as_str().unwrap().starts_with("Accept queue full"), "{full}");
}

/// Joining another namespace needs root: one line saying so, exit status 2 as for any missing
/// privilege, never the "warnings" status 1.
#[test]
fn without_root_other_namespaces_are_out_of_reach() {
    require_root();
    let mut lab = Lab::new("opperm").unwrap();
    let ns = lab.add_ns("other").unwrap();
    let check = ["check", "--netns", &ns];
    let counters = ["counters", "--netns", &ns, "--interval", "0.1"];
    for args in [&check[..], &counters[..]] {
        let out = run(Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
            .arg(netdiag_bin())
            .args(args));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(&format!("cannot enter network namespace {ns}")) && err.contains("needs root"), "{err}");
    }
}

#[test]
fn explain_describes_a_counter_given_without_prefix() {
    let out = netdiag(&["explain", "PAWSTimewait"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("TcpExtPAWSTimewait — kernel counter"), "{text}");
    for needle in ["What usually causes it", "TCP_RFC7323_TW_PAWS", "What to do", "NAT"] {
        assert!(text.contains(needle), "{needle} missing: {text}");
    }
}

#[test]
fn explain_suggests_close_names_for_a_misspelling() {
    let out = netdiag(&["explain", "PAWSTimewiat"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
    assert!(stderr(&out).contains("did you mean TcpExtPAWSTimewait"), "{}", stderr(&out));
}
