//! `netdiag top` in a real terminal: tmux runs it in a detached pane of fixed size, the test
//! reads the screen with `capture-pane`, types keys with `send-keys`, and reproduces a PAWS
//! incident in throwaway namespaces meanwhile.
use std::{
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use netdiag::scenario::{self, CLIENT_V4, PawsTopology};
use netdiag_tests::{netdiag_bin, require_root};

const WIDTH: u32 = 160;
const HEIGHT: u32 = 40;
/// Printed by the pane's shell once netdiag exits, with its status.
const EXITED: &str = "netdiag exited with status";
/// Printed after the terminal modes, so the pane is read once they are all on it.
const MODES_SHOWN: &str = "terminal modes shown";

/// A tmux server of its own (own socket, no user config) holding one pane; killed when dropped,
/// whatever the test's outcome.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `command` through `sh` in a detached pane of `WIDTH` x `HEIGHT`.
    fn start(command: &str) -> Tmux {
        let available = Command::new("tmux").arg("-V").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
        assert!(available, "tmux is not installed: add it to the test machine's setup (apt-get install tmux)");
        let tmux = Tmux { socket: format!("netdiag-top-{}", std::process::id()) };
        let (width, height) = (WIDTH.to_string(), HEIGHT.to_string());
        tmux.run(&["new-session", "-d", "-s", "top", "-x", &width, "-y", &height, command]);
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux").args(["-L", &self.socket, "-f", "/dev/null"]).args(args).output().unwrap();
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    fn press(&self, key: &str) {
        self.run(&["send-keys", "-t", "top", key]);
    }

    /// A pane property, by tmux format (`#{alternate_on}`...).
    fn pane(&self, format: &str) -> String {
        String::from_utf8_lossy(&self.run(&["display-message", "-p", "-t", "top", format]).stdout).trim().to_string()
    }

    /// The screen once `ready` holds for it; fails with the last screen after `timeout`.
    fn wait_for(&self, what: &str, timeout: Duration, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).stderr(Stdio::null()).status();
    }
}

/// The table row about `peer` in namespace `netns`, split into columns.
fn row<'a>(screen: &'a str, peer: &str, netns: &str) -> Option<Vec<&'a str>> {
    screen
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.len() >= 3 && cols[0] == peer && cols[1] == netns)
}

/// The column the header says the table is sorted by.
fn sorted_by(screen: &str) -> String {
    let header = screen.lines().find(|l| l.starts_with("netdiag top")).expect("header line");
    header.split("sort: ").nth(1).expect("sort indicator").trim().to_string()
}

#[test]
fn shows_the_paws_peer_sorts_and_quits_cleanly() {
    require_root();
    // After netdiag exits the shell reports its status and whether the terminal left raw mode,
    // then stays so the pane can still be read.
    let command = format!("{} top; echo \"{EXITED} $?\"; stty -a; echo {MODES_SHOWN}; sleep 600", netdiag_bin());
    let tmux = Tmux::start(&command);
    let screen = tmux.wait_for("the header", Duration::from_secs(60), |s| s.contains("netdiag top - kernel"));
    assert!(screen.contains("paws_checks"), "the header lists the hooks:\n{screen}");
    assert_eq!(tmux.pane("#{alternate_on}"), "1", "top draws on the alternate screen");

    let topo = PawsTopology::new("top").unwrap();
    let run = scenario::paws_established(&topo, false, 5).unwrap();
    assert_eq!(run.injected, 5);
    let client = CLIENT_V4.to_string();
    // The last column names the workload behind the namespace, here a namespace of its own,
    // once the workload table's rescan for a new namespace has run.
    let workload = format!("netns/{}", topo.server_ns);
    let screen = tmux.wait_for("5 PAWS drops from the client, and its workload", Duration::from_secs(20), |s| {
        row(s, &client, &topo.server_ns).is_some_and(|cols| cols[2] == "5" && cols.last() == Some(&workload.as_str()))
    });

    let before = sorted_by(&screen);
    tmux.press("s");
    let after = tmux.wait_for("the sort to move", Duration::from_secs(5), |s| sorted_by(s) != before);
    assert_eq!(sorted_by(&after), "PAWS drops", "s moves from {before} to the next column");

    // Sorted by PAWS drops the client is the first row, selected: Enter drills into it.
    tmux.press("Enter");
    let port = run.server.port();
    let drill = tmux.wait_for("the drill-down", Duration::from_secs(5), |s| s.contains(&format!("peer {client} in {}", topo.server_ns)));
    assert!(drill.contains(&format!("TCP_RFC7323_PAWS to :{port} 5")), "the peer's drops by reason and port:\n{drill}");
    assert!(drill.contains(&format!("SYN funnel :{port}: 1 SYNs, 1 SYN-ACKs")), "its SYN funnel:\n{drill}");
    tmux.press("Escape");
    tmux.wait_for("the drill-down to close", Duration::from_secs(5), |s| !s.contains(&format!("peer {client} in")));

    tmux.press("q");
    let end = tmux.wait_for("netdiag to exit", Duration::from_secs(20), |s| s.contains(MODES_SHOWN));
    assert!(end.contains(&format!("{EXITED} 0")), "exit status 0:\n{end}");
    assert_eq!(tmux.pane("#{alternate_on}"), "0", "the alternate screen was left:\n{end}");
    let tty_modes = end.split(EXITED).nth(1).unwrap();
    assert!(
        tty_modes.split_whitespace().any(|m| m == "icanon") && tty_modes.split_whitespace().any(|m| m == "echo"),
        "raw mode was turned off:\n{end}"
    );
}

#[test]
fn refuses_without_a_terminal() {
    let out = Command::new(netdiag_bin()).arg("top").stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("needs a terminal") && stderr.contains("netdiag diagnose"), "{stderr}");
    assert!(out.stdout.is_empty());
}
