use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
};

use super::*;

const NETSTAT: &str = "\
TcpExt: SyncookiesSent PAWSEstab
TcpExt: 0 7
IpExt: InNoRoutes InOctets
IpExt: 0 18446744073709551615
";

const SNMP: &str = "\
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens CurrEstab
Tcp: 1 200 120000 -1 42 2 3
Udp: InDatagrams
Udp: 5
";

const SNMP6: &str = "\
Ip6InReceives                   \t12
Ip6InHdrErrors                  \t0
";

#[test]
fn parses_all_three_formats_as_nstat_names_them() {
    let text = [NETSTAT, SNMP, SNMP6].concat();
    let expected = [
        ("TcpExtSyncookiesSent", 0),
        ("TcpExtPAWSEstab", 7),
        ("IpExtInNoRoutes", 0),
        ("IpExtInOctets", u64::MAX),
        ("TcpActiveOpens", 42),
        ("TcpPassiveOpens", 2),
        ("UdpInDatagrams", 5),
        ("Ip6InReceives", 12),
        ("Ip6InHdrErrors", 0),
    ];
    let expected: Counters = expected.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(parse(&text), expected);
}

#[test]
fn tolerates_broken_input() {
    assert!(parse("").is_empty());
    assert!(parse("TcpExt: A B\n").is_empty());
    assert!(parse("TcpExt: A B\nIpExt: 1 2\n").is_empty());
    let short_values = parse("Tcp: ActiveOpens PassiveOpens\nTcp: 4\n");
    assert_eq!(short_values, Counters::from([("TcpActiveOpens".into(), 4)]));
    assert_eq!(parse("Tcp: ActiveOpens\nTcp: x\n"), Counters::new());
}

#[test]
fn delta_keeps_only_rises() {
    let before = Counters::from([("A".into(), 5), ("B".into(), 9), ("C".into(), 1)]);
    let after =
        Counters::from([("A".into(), 8), ("B".into(), 3), ("C".into(), 1), ("D".into(), 2)]);
    assert_eq!(delta(&before, &after), Counters::from([("A".into(), 3), ("D".into(), 2)]));
}

/// `ip netns add`, removed again on drop (also when the test fails).
struct TestNetns {
    name: String,
}

impl TestNetns {
    fn add(tag: &str) -> Option<TestNetns> {
        let name = format!("nd-cnt-{}-{tag}", std::process::id());
        if !ip(&["netns", "add", &name]) {
            eprintln!("skipping: cannot create network namespaces here");
            return None;
        }
        let ns = TestNetns { name };
        assert!(ip(&["-n", &ns.name, "link", "set", "lo", "up"]));
        Some(ns)
    }

    fn path(&self) -> PathBuf {
        Path::new(netns::NAMED_NETNS_DIR).join(&self.name)
    }

    fn netns(&self) -> Netns {
        let path = self.path();
        Netns { inode: netns::inode_of(&path).unwrap(), name: self.name.clone(), path }
    }

    /// Opens `count` loopback connections inside the namespace.
    fn connect(&self, count: usize) {
        netns::run_in(&self.path(), move || {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            for _ in 0..count {
                let _client = TcpStream::connect(listener.local_addr()?)?;
                let _server = listener.accept()?;
            }
            Ok(())
        })
        .unwrap();
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.name]);
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).status().is_ok_and(|status| status.success())
}

fn root() -> Netns {
    netns::named().unwrap().remove(0)
}

#[test]
fn reads_each_namespace_separately() {
    let (Some(busy), Some(quiet)) = (TestNetns::add("busy"), TestNetns::add("quiet")) else {
        return;
    };
    busy.connect(3);
    let busy_counters = read_in(&busy.netns()).unwrap();
    let quiet_counters = read_in(&quiet.netns()).unwrap();
    assert_eq!(busy_counters.get("TcpActiveOpens"), Some(&3));
    assert_eq!(busy_counters.get("TcpPassiveOpens"), Some(&3));
    assert_eq!(quiet_counters.get("TcpActiveOpens"), Some(&0));
    assert!(quiet_counters.contains_key("TcpExtPAWSEstab"));
    assert_ne!(read_in(&root()).unwrap(), busy_counters);
}

/// The experiment behind reading `thread-self`: `/proc/self/net` shows the main thread's
/// namespace even to a thread that joined another one.
#[test]
fn proc_self_net_follows_the_main_thread() {
    let Some(ns) = TestNetns::add("self") else { return };
    let interfaces = |path: &'static str| {
        netns::run_in(&ns.path(), move || Ok(std::fs::read_to_string(path)?.lines().count()))
            .unwrap()
    };
    let root_interfaces =
        std::fs::read_to_string("/proc/thread-self/net/dev").unwrap().lines().count();
    // Two header lines, then only `lo` in a fresh namespace.
    assert_eq!(interfaces("/proc/thread-self/net/dev"), 3);
    assert_eq!(interfaces("/proc/self/net/dev"), root_interfaces);
}

#[test]
fn matches_nstat() {
    let Some(ns) = TestNetns::add("nstat") else { return };
    ns.connect(2);
    // -a: absolute values, ignoring history; -s: leave the history file alone; -z: zeros too.
    let Ok(out) = Command::new("ip").args(["netns", "exec", &ns.name, "nstat", "-asz"]).output()
    else {
        return eprintln!("skipping: nstat not installed");
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let nstat: Counters = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.parse().ok()?))
        })
        .collect();
    let ours = read_in(&ns.netns()).unwrap();
    assert_eq!(ours.get("TcpActiveOpens"), Some(&2));
    assert_eq!(ours, nstat);
}

#[test]
fn watch_reports_deltas_per_namespace() {
    let (Some(before), Some(gone)) = (TestNetns::add("before"), TestNetns::add("gone")) else {
        return;
    };
    before.connect(2);
    gone.connect(1);
    let mut watch = CounterWatch::start().unwrap();
    let Some(after) = TestNetns::add("after") else { return };
    before.connect(1);
    after.connect(4);
    let gone_inode = gone.netns().inode;
    watch.refresh(&[gone_inode]).unwrap();
    assert!(watch.has_reading(gone_inode));
    // Counted after the last refresh and before deletion: still read, through the held fd.
    gone.connect(1);
    drop(gone);

    let deltas = watch.deltas(&[gone_inode, u32::MAX]).unwrap();
    let opens = |ns: &TestNetns| {
        let (_, delta) = deltas.iter().find(|(found, _)| found.name == ns.name)?;
        delta.get("TcpActiveOpens").copied()
    };
    assert_eq!(opens(&before), Some(1), "counted from the baseline");
    assert_eq!(opens(&after), Some(4), "a namespace created later starts from zero");
    let gone_delta = deltas.iter().find(|(ns, _)| ns.inode == gone_inode).map(|(_, d)| d["TcpActiveOpens"]);
    assert_eq!(gone_delta, Some(1), "a namespace deleted during the session is still read to the end");
    assert!(!deltas.iter().any(|(ns, _)| ns.inode == u32::MAX));
    assert!(deltas.iter().all(|(_, delta)| !delta.is_empty()));
}
