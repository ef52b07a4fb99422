//! Workload attribution with real containers. podman (Debian's package, run through runc) starts
//! containers from an image made here from busybox-static (no registry). Each container joins a
//! namespace a scenario created (`--network ns:/run/netns/NAME`), so the incident's traffic runs
//! in the containers' own network namespaces, and netdiag must name them from `/proc` and the
//! files podman keeps on disk. `podman inspect` is the reference. In the TIME_WAIT and NAT
//! reproductions the server (busybox httpd) and the misbehaving clients (busybox nc) are
//! processes in the containers; the scenario only sets the stage (clocks, ports, NAT) and
//! counts on the wire.
//!
//! Host only: the qemu guests have no container runtime, and `cargo xtask vmtest` leaves this
//! file out of its list (see `xtask/src/vmtest/binaries.rs`).
use std::{
    net::{IpAddr, SocketAddr, TcpStream},
    os::unix::fs::MetadataExt as _,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use netdiag::scenario::{
    self, CLIENT_V4, NAT_PUBLIC_V4, NAT_SERVER_PORT, NAT_SERVER_V4, NatEnds, NatTopology, PawsTopology,
    RemoteEndTopology, SERVER_V4, SHARED_SOURCE_PORT, TimeWaitEnds,
};
use netdiag_tests::{
    Diagnose,
    agent::{Agent, TempDir, value_of},
    findings_for, require_root,
};
use serde_json::Value;

const IMAGE: &str = "localhost/netdiag-test:busybox";

/// The containers' only process: long enough for any test here, and removed at drop anyway.
const CONTAINER_LIFETIME_S: &str = "300";

/// `podman ARGS`; its stdout, or a panic with its stderr and what it was asked.
fn podman(args: &[&str]) -> String {
    let out = Command::new("podman").args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("podman cannot be run ({e}): `cargo xtask setup` installs it (Debian packages podman and runc)")
    });
    assert!(
        out.status.success(),
        "podman {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The test image, imported once from a rootfs of busybox-static.
fn image() -> &'static str {
    let exists = Command::new("podman").args(["image", "exists", IMAGE]).stderr(Stdio::null()).status();
    if exists.is_ok_and(|s| s.success()) {
        return IMAGE;
    }
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.exists(), "/bin/busybox is missing: `cargo xtask setup` installs busybox-static");
    let dir = std::env::temp_dir().join(format!("netdiag-rootfs-{}", std::process::id()));
    let bin = dir.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let tar = dir.join("rootfs.tar");
    let packed = Command::new("tar").arg("-C").arg(dir.join("rootfs")).arg("-cf").arg(&tar).arg(".").status().unwrap();
    assert!(packed.success(), "tar of the rootfs failed");
    podman(&["import", tar.to_str().unwrap(), IMAGE]);
    std::fs::remove_dir_all(&dir).unwrap();
    IMAGE
}

/// A running container, removed (killed at once) when dropped.
struct Container {
    name: String,
    id: String,
}

impl Container {
    /// Starts `sleep` in a container called `netdiag-<role>-<pid>` that lives in the network
    /// namespace at `netns`.
    fn start(role: &str, netns: &Path) -> Container {
        Container::run(role, netns, &["sleep", CONTAINER_LIFETIME_S])
    }

    /// [`Container::start`] with `command` (of the image's busybox) instead of `sleep`.
    fn run(role: &str, netns: &Path, command: &[&str]) -> Container {
        Container::run_with(role, netns, &[], command)
    }

    /// [`Container::run`] with more `podman run` options (`--annotation`, ...).
    fn run_with(role: &str, netns: &Path, more_options: &[&str], command: &[&str]) -> Container {
        let name = format!("netdiag-{role}-{}", std::process::id());
        let network = format!("ns:{}", netns.display());
        let options = [
            "run",
            "--detach",
            "--rm",
            "--name",
            &name,
            "--network",
            &network,
            // Debian 12's crun refuses hosts with cgroup v1 and v2 mounted together ("cgroups in
            // hybrid mode not supported"); runc runs on both.
            "--runtime",
            "runc",
            // podman's default limits are above what a root without CAP_SYS_RESOURCE (a
            // container CI runner) may set.
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ];
        let id = podman(&[&options[..], more_options, &[image()], command].concat());
        let container = Container { name, id };
        let pid = podman(&["inspect", "--format", "{{.State.Pid}}", &container.name]);
        let in_netns = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        let want = std::fs::metadata(netns).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        assert_eq!(in_netns.unwrap(), want.unwrap(), "{} is not in {}", container.name, netns.display());
        container
    }

    /// Runs `command` in the container (`podman exec`, stdin empty); an error with its stderr
    /// if it fails, as a connect that is refused or times out does.
    fn exec(&self, command: &[&str]) -> anyhow::Result<()> {
        let out = Command::new("podman").args(["exec", &self.name]).args(command).stdin(Stdio::null()).output()?;
        anyhow::ensure!(
            out.status.success(),
            "`{}` in {} failed ({}): {}",
            command.join(" "),
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// An HTTP/1.0 GET to `server` by busybox nc in the container: httpd answers and closes
    /// first, and nc exits at its end of stream (its stdin stays open until then, or nc would
    /// close first). `false` if the connect gave up after `timeout` (in whole seconds, nc's).
    fn get(&self, server: SocketAddr, timeout: Duration) -> anyhow::Result<bool> {
        let seconds = timeout.as_secs().max(1);
        let (ip, port) = (server.ip(), server.port());
        let request = format!("(printf 'GET / HTTP/1.0\\r\\n\\r\\n'; sleep 2) | busybox nc -w {seconds} {ip} {port}");
        match self.exec(&["sh", "-c", &request]) {
            Err(e) if e.to_string().contains("nc: timed out") => Ok(false),
            done => done.map(|()| true),
        }
    }
}

/// busybox httpd on `listen` (`[IP:]PORT`): it answers HTTP/1.0 and closes first. The
/// scenarios look for its TIME_WAIT sockets in `/proc/net/tcp`, which has only an IPv4
/// socket's: they give it an IPv4 address.
fn httpd(listen: &str) -> [&str; 7] {
    ["busybox", "httpd", "-f", "-p", listen, "-h", "/"]
}

/// What a connect that must succeed may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(2);

/// Makes `port` the only ephemeral port of namespace `ns`: busybox nc cannot bind one, and the
/// reconnects must come from the port the server holds in TIME_WAIT.
fn only_port(lab: &scenario::Lab, ns: &str, port: u16) {
    lab.sysctl(ns, "net.ipv4.ip_local_port_range", &format!("{port} {port}")).unwrap();
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rm", "--force", "--time", "0", &self.name]).output();
    }
}

/// Asserts that `workload` (a finding's, a peer's) is `container`, by name and full id.
fn assert_names(workload: &Value, container: &Container, context: &Value) {
    assert_eq!(workload["kind"], "container", "{context:#}");
    assert_eq!(workload["runtime"], "podman", "{context:#}");
    assert_eq!(workload["name"], container.name.as_str(), "{context:#}");
    assert_eq!(workload["id"], container.id.as_str(), "{context:#}");
}

/// Findings seen from namespace `netns`.
fn in_ns<'a>(report: &'a Value, netns: &str) -> Vec<&'a Value> {
    report["findings"].as_array().unwrap().iter().filter(|f| f["netns"] == netns).collect()
}

/// The TIME_WAIT PAWS reconnect between processes in two containers: busybox httpd in the server
/// container answers and closes first (so the server holds the 4-tuple in TIME_WAIT), busybox nc
/// in the client container connects, and reconnects with the clock that is behind. A sidecar
/// started first in the server's namespace stands for that namespace, so a finding can name the
/// server container only by the cgroup of the socket on its port, httpd's.
#[test]
fn time_wait_reconnects_name_the_server_and_client_containers_and_container_filters() {
    require_root();
    let topo = PawsTopology::new("ctrtw").unwrap();
    only_port(topo.lab(), &topo.client_ns, CLIENT_PORT);
    let sidecar = Container::start("tw-side", &topo.server_path());
    let server = Container::run("tw-srv", &topo.server_path(), &httpd(&InContainers::SERVER.to_string()));
    wait_for_listener(&topo.server_ns, WEB_PORT);
    let client = Container::start("tw-cli", &topo.client_path());
    // By name for one, by a short id (as `podman ps` shows it) for the other.
    let on_server = Diagnose::start(&["--container", &server.name]).unwrap();
    let on_client = Diagnose::start(&["--container", &client.id[..12]]).unwrap();
    let client_addr = CLIENT_V4.to_string();
    let peer_args = ["peer", &client_addr, "--json", "--duration", "300", "--container", &server.name];
    let drill_down = Diagnose::start_command(&peer_args).unwrap();
    let run = scenario::paws_time_wait_between(&topo, &InContainers { client: &client }).unwrap();
    let server_report = on_server.finish().unwrap();
    let client_report = on_client.finish().unwrap();
    let drill = drill_down.finish().unwrap();

    let time_wait: Vec<&Value> = findings_for(&server_report, "paws_rejections", &client_addr)
        .into_iter()
        .filter(|f| f["variant"] == "time_wait")
        .collect();
    assert_eq!(time_wait.len(), 1, "one TIME_WAIT finding about the client: {:#}", server_report["findings"]);
    let finding = time_wait[0];
    assert_eq!(finding["netns"], topo.server_ns.as_str());
    assert_eq!(finding["count"].as_u64(), Some(run.injected), "{finding:#}");
    assert_names(&finding["workload"], &server, finding);
    assert_names(&finding["peer_workload"], &client, finding);
    // A peer row is the namespace's, and the namespace's workload is the sidecar.
    let peer_row = server_report["peers"].as_array().unwrap().iter().find(|p| p["addr"] == client_addr.as_str());
    assert_names(&peer_row.expect("a peer row for the client")["workload"], &sidecar, &server_report["peers"]);

    // --container covers that container's namespace only.
    assert!(
        server_report["findings"].as_array().unwrap().iter().all(|f| f["netns"] == topo.server_ns.as_str()),
        "{:#}",
        server_report["findings"]
    );
    assert!(in_ns(&client_report, &topo.server_ns).is_empty(), "{:#}", client_report["findings"]);
    // The client's kernel drops nothing (the rejections are the server's), so its report has no
    // finding or peer to name it; its counters show the filter chose its namespace, and only it.
    assert!(client_report["findings"].as_array().unwrap().is_empty(), "{client_report:#}");
    assert!(client_report["peers"].as_array().unwrap().is_empty(), "{client_report:#}");
    let counters = client_report["counters"].as_object().unwrap();
    assert_eq!(counters.keys().collect::<Vec<_>>(), [&topo.client_ns], "{client_report:#}");
    let retransmitted = counters[&topo.client_ns]["TcpExtTCPSynRetrans"].as_u64().unwrap_or(0);
    assert!(retransmitted > 0, "the rejected reconnect's SYNs were sent again: {client_report:#}");

    // `netdiag peer --container`: the findings name the container, and the sockets are the
    // container's (the server holds the client's 4-tuple in TIME_WAIT).
    let drilled: Vec<&Value> = findings_for(&drill, "paws_rejections", &client_addr);
    assert!(!drilled.is_empty(), "{drill:#}");
    for finding in &drilled {
        assert_names(&finding["workload"], &server, finding);
    }
    let sockets = drill["sockets"].as_array().unwrap();
    let time_wait_socket = format!("{CLIENT_V4}:{CLIENT_PORT}");
    assert!(sockets.iter().any(|s| s["state"] == "TIME-WAIT" && s["remote"] == time_wait_socket.as_str()), "{:#}", drill["sockets"]);
    assert!(sockets.iter().all(|s| s["netns"] == topo.server_ns.as_str()), "{:#}", drill["sockets"]);
}

/// The client's only ephemeral port.
const CLIENT_PORT: u16 = 41000;

/// The TIME_WAIT reconnect's ends as processes in the containers: httpd already listens in the
/// server container, nc runs in the client container.
struct InContainers<'a> {
    client: &'a Container,
}

impl InContainers<'_> {
    const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(SERVER_V4), WEB_PORT);

    fn check(port: u16) -> anyhow::Result<()> {
        anyhow::ensure!(port == CLIENT_PORT, "the client's only port is {CLIENT_PORT}, not {port}");
        Ok(())
    }
}

impl TimeWaitEnds for InContainers<'_> {
    fn server(&self) -> SocketAddr {
        InContainers::SERVER
    }

    fn accept_probe(&self) -> anyhow::Result<Option<TcpStream>> {
        Ok(None)
    }

    fn server_closes_first(&self, port: u16) -> anyhow::Result<()> {
        InContainers::check(port)?;
        anyhow::ensure!(self.client.get(InContainers::SERVER, CONNECT_WITHIN)?, "{} could not connect", self.client.name);
        Ok(())
    }

    fn reconnect(&self, port: u16, timeout: Duration) -> anyhow::Result<()> {
        InContainers::check(port)?;
        anyhow::ensure!(self.client.get(InContainers::SERVER, timeout)?, "the reconnect gave up after {timeout:?}");
        Ok(())
    }
}

#[test]
fn syns_unanswered_behind_a_nat_name_the_server_and_gateway_containers() {
    require_root();
    let topo = NatTopology::new("ctrnat", 2, 1).unwrap();
    let listen = SocketAddr::new(NAT_SERVER_V4.into(), NAT_SERVER_PORT).to_string();
    let server = Container::run("nat-srv", &topo.server_path(), &httpd(&listen));
    wait_for_listener(&topo.server_ns, NAT_SERVER_PORT);
    let gateway = Container::start("nat-gw", &topo.lab().ns_path(&topo.router_ns));
    let behind_nat = BehindNat {
        clients: (topo.nat_clients.iter().enumerate())
            .map(|(i, (ns, _))| {
                only_port(topo.lab(), ns, SHARED_SOURCE_PORT);
                (ns.clone(), Container::start(&format!("nat-cli{i}"), &topo.lab().ns_path(ns)))
            })
            .collect(),
    };
    let tracer = Diagnose::start(&["--container", &server.name]).unwrap();
    // The text report, selected by the full id.
    let text_tracer = Diagnose::start_command(&["diagnose", "--duration", "300", "--container", &server.id]).unwrap();
    let run = scenario::nat_time_wait_between(&topo, &behind_nat).unwrap();
    let report = tracer.finish().unwrap();
    let text = text_tracer.end_with(libc::SIGINT).unwrap();
    assert!(text.status.success(), "{}", text.stderr.join("\n"));
    eprintln!("{}", text.stdout);

    let nat = NAT_PUBLIC_V4.to_string();
    let unanswered = findings_for(&report, "unanswered_syns", &nat);
    assert_eq!(unanswered.len(), 1, "{:#}", report["findings"]);
    let finding = unanswered[0];
    eprintln!("{finding:#}");
    assert_eq!(finding["variant"], "time_wait_paws", "{finding:#}");
    assert_eq!(finding["count"].as_u64(), Some(run.rejected_syns), "{finding:#}");
    assert_names(&finding["workload"], &server, finding);
    assert_names(&finding["peer_workload"], &gateway, finding);
    let clocks = findings_for(&report, "nat_timestamp_clocks", &nat);
    assert_eq!(clocks.len(), 1, "{:#}", report["findings"]);
    assert_names(&clocks[0]["workload"], &server, clocks[0]);
    // The SYN funnel and the clock estimates name the listener's container too.
    let of_nat = |rows: &Value| -> Vec<Value> { rows.as_array().unwrap().iter().filter(|r| r["peer"] == nat.as_str()).cloned().collect() };
    for rows in [of_nat(&report["syn_funnel"]), of_nat(&report["timestamp_clocks"])] {
        assert!(!rows.is_empty(), "{report:#}");
        for row in &rows {
            assert_names(&row["workload"], &server, row);
        }
    }
    // The text names both containers with the short id `podman ps` shows.
    let server_shown = format!("(container {} (podman {}), netns {})", server.name, &server.id[..12], topo.server_ns);
    let gateway_shown = format!("peer {nat} [container {} (podman {})] {server_shown}", gateway.name, &gateway.id[..12]);
    let header = text.stdout.lines().find(|l| l.contains("[unanswered_syns / time_wait_paws]"));
    assert!(header.is_some_and(|l| l.contains(&gateway_shown)), "want `{gateway_shown}`:\n{}", text.stdout);
}

/// The clients behind the NAT as busybox nc in containers of their namespaces; httpd listens in
/// the server's.
struct BehindNat {
    /// Each client's namespace and container.
    clients: Vec<(String, Container)>,
}

impl NatEnds for BehindNat {
    fn server_closes_first(&self, ns: &str, from: SocketAddr, timeout: Duration) -> anyhow::Result<bool> {
        anyhow::ensure!(from.port() == SHARED_SOURCE_PORT, "the clients' only port is {SHARED_SOURCE_PORT}");
        let (_, client) =
            self.clients.iter().find(|(n, _)| n == ns).ok_or_else(|| anyhow::anyhow!("no client container in {ns}"))?;
        client.get(SocketAddr::new(NAT_SERVER_V4.into(), NAT_SERVER_PORT), timeout)
    }
}

#[test]
fn the_agent_labels_metrics_and_json_lines_with_the_containers() {
    require_root();
    let topo = PawsTopology::new("ctragent").unwrap();
    let dir = TempDir::new("containers");
    let jsonl = dir.0.join("findings.jsonl");
    // Only this test's server namespace: tests running meanwhile may cause PAWS drops elsewhere.
    let config = format!(
        "json_lines = \"{}\"\ninterval_s = 0.5\n[filters]\nnetns = [\"{}\"]\n",
        jsonl.display(),
        topo.server_ns
    );
    let agent = Agent::start(&dir.0, &config);
    // Started after the agent: it must notice them (it looks for new namespaces, or processes
    // in namespaces that had none, every second).
    let server = Container::start("ag-srv", &topo.server_path());
    let client = Container::start("ag-cli", &topo.client_path());
    std::thread::sleep(Duration::from_secs(2));
    let run = scenario::paws_time_wait(&topo).unwrap();

    let client_addr = CLIENT_V4.to_string();
    let workload = format!("container/{}", server.name);
    let labels =
        [("peer", client_addr.as_str()), ("variant", "time_wait"), ("netns", topo.server_ns.as_str()), ("workload", &workload)];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut served = None;
    while served != Some(run.injected as f64) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        served = value_of(&agent.metrics(), "netdiag_paws_rejections_total", &labels);
    }
    assert_eq!(served, Some(run.injected as f64), "series {labels:?}:\n{}", agent.metrics());

    let lines = std::fs::read_to_string(&jsonl).unwrap();
    let opened: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["event"] == "open" && l["kind"] == "paws_rejections" && l["variant"] == "time_wait")
        .collect();
    assert_eq!(opened.len(), 1, "{lines}");
    assert_names(&opened[0]["workload"], &server, &opened[0]);
    assert_names(&opened[0]["peer_workload"], &client, &opened[0]);
    agent.stop();
}

/// CRI-O and containerd write a pod's name and namespace into each of its containers' OCI
/// bundle (`config.json`) as annotations. podman writes its `--annotation`s into its bundle too,
/// in containers/storage as CRI-O's (`overlay-containers/<id>/userdata/config.json`), where
/// netdiag reads them: a podman container with the annotations CRI-O sets stands for a pod's.
#[test]
fn a_container_with_the_cri_pod_annotations_names_its_pod_and_pod_selects_it() {
    require_root();
    let topo = PawsTopology::new("ctrpod").unwrap();
    let pod = format!("web-{}", std::process::id());
    let annotations = [
        format!("io.kubernetes.pod.name={pod}"),
        format!("io.kubernetes.pod.namespace={POD_NAMESPACE}"),
        format!("io.kubernetes.container.name={POD_CONTAINER}"),
    ];
    let options: Vec<&str> = annotations.iter().flat_map(|a| ["--annotation", a.as_str()]).collect();
    let server = Container::run_with("pod-srv", &topo.server_path(), &options, &["sleep", CONTAINER_LIFETIME_S]);
    let tracer = Diagnose::start(&["--pod", &format!("{POD_NAMESPACE}/{pod}")]).unwrap();
    let run = scenario::paws_established(&topo, false, 5).unwrap();
    let report = tracer.finish().unwrap();

    let client_addr = CLIENT_V4.to_string();
    let established: Vec<&Value> = findings_for(&report, "paws_rejections", &client_addr)
        .into_iter()
        .filter(|f| f["variant"] == "established")
        .collect();
    assert_eq!(established.len(), 1, "{:#}", report["findings"]);
    let finding = established[0];
    assert_eq!(finding["count"].as_u64(), Some(run.injected), "{finding:#}");
    // One container, so kind `container`; its name is Kubernetes', as CRI-O's would be.
    let workload = &finding["workload"];
    assert_eq!(workload["kind"], "container", "{finding:#}");
    assert_eq!(workload["runtime"], "podman", "{finding:#}");
    assert_eq!(workload["id"], server.id.as_str(), "{finding:#}");
    assert_eq!(workload["name"], POD_CONTAINER, "{finding:#}");
    assert_eq!(workload["pod"], pod.as_str(), "{finding:#}");
    assert_eq!(workload["namespace"], POD_NAMESPACE, "{finding:#}");
    // --pod covers the pod's namespace only: the client's moved counters too, and are left out.
    assert!(report["findings"].as_array().unwrap().iter().all(|f| f["netns"] == topo.server_ns.as_str()), "{report:#}");
    let counters = report["counters"].as_object().unwrap();
    assert_eq!(counters.keys().collect::<Vec<_>>(), [&topo.server_ns], "{report:#}");
}

const POD_NAMESPACE: &str = "netdiag-test";
const POD_CONTAINER: &str = "web";

#[test]
fn an_unknown_container_or_pod_is_a_usage_error() {
    require_root();
    for (args, message) in [
        (["--container", "netdiag-no-such-container"], "no running container named `netdiag-no-such-container`"),
        (["--pod", "netdiag-test/no-such-pod"], "no running pod netdiag-test/no-such-pod"),
        (["--pod", "no-such-pod"], "--pod wants NAMESPACE/NAME"),
    ] {
        let out = Command::new(netdiag_tests::netdiag_bin()).args(["diagnose", "--duration", "1"]).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

/// The containers of a pod share one namespace, so the namespace alone cannot say which of them
/// a finding is about. Here a sidecar joins the namespace first (the namespace's workload is
/// it) and a web server (busybox httpd) second; an ACK loop on a connection to the web server
/// must name the web server, by the cgroup the kernel programs read off its socket, and so
/// must the SYN funnel row of its port.
#[test]
fn a_finding_names_the_container_owning_the_socket_among_those_sharing_a_namespace() {
    names_the_socket_owner("ctrsock", || Diagnose::start(&[]).unwrap());
}

/// The same with netdiag as a DaemonSet runs on cgroup v2: in a cgroup namespace of its own,
/// the unified hierarchy mounted as its container sees it (its own subtree only), so the other
/// containers' cgroup paths read `/../…` and resolve nowhere under its mount. It must name the
/// socket's owner all the same, from the host's cgroup namespace and mount.
#[test]
fn in_a_cgroup_namespace_of_its_own_netdiag_still_names_the_socket_owner() {
    require_root();
    let cgroup = ChildCgroup::new();
    names_the_socket_owner("ctrcgns", || {
        let tracer = Diagnose::spawn(cgroup.own_namespace_command(&["diagnose", "--json", "--duration", "300"])).unwrap();
        let ours = std::fs::metadata("/proc/self/ns/cgroup").unwrap().ino();
        assert_ne!(std::fs::metadata(format!("/proc/{}/ns/cgroup", tracer.pid())).unwrap().ino(), ours);
        // Its cgroup2 mount, as this process sees it, is rooted at its own cgroup.
        let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", tracer.pid())).unwrap();
        let root = mounts.lines().find(|l| l.contains(" - cgroup2 ")).and_then(|l| l.split(' ').nth(3));
        assert_eq!(root, Some(cgroup.path.as_str()), "{mounts}");
        tracer
    });
}

/// A cgroup of the unified hierarchy, made for one test and removed after it.
struct ChildCgroup {
    /// Where the host mounts the unified hierarchy.
    mount: String,
    /// Its path in the hierarchy.
    path: String,
}

impl ChildCgroup {
    fn new() -> ChildCgroup {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mount = netdiag::workload::cgroup::unified_mount(&mounts).expect("no cgroup2 mount").to_string();
        let cgroup = ChildCgroup { mount, path: format!("/netdiag-test-{}", std::process::id()) };
        std::fs::create_dir(cgroup.dir()).unwrap();
        cgroup
    }

    fn dir(&self) -> String {
        format!("{}{}", self.mount, self.path)
    }

    /// netdiag with `args`, run in this cgroup, in a cgroup namespace rooted there and a mount
    /// namespace whose cgroup2 mount is made anew inside it, as a container runtime does.
    fn own_namespace_command(&self, args: &[&str]) -> Command {
        use std::{ffi::CString, os::unix::process::CommandExt as _};
        let procs = CString::new(format!("{}/cgroup.procs", self.dir())).unwrap();
        let mount = CString::new(self.mount.as_str()).unwrap();
        let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
        let mut command = Command::new(netdiag_tests::netdiag_bin());
        command.args(args);
        // SAFETY: between fork and exec only system calls on strings made before the fork.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
                check(libc::unshare(libc::CLONE_NEWCGROUP | libc::CLONE_NEWNS))?;
                check(libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()))?;
                check(libc::umount2(mount.as_ptr(), libc::MNT_DETACH))?;
                check(libc::mount(c"cgroup2".as_ptr(), mount.as_ptr(), c"cgroup2".as_ptr(), 0, std::ptr::null()))
            });
        }
        command
    }
}

impl Drop for ChildCgroup {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(self.dir()) {
            eprintln!("removing the test's cgroup {}: {e}", self.dir());
        }
    }
}

/// A sidecar and a web server share a namespace; an ACK loop on a connection to the web server
/// while `start_tracer`'s netdiag traces.
fn names_the_socket_owner(name: &str, start_tracer: impl FnOnce() -> Diagnose) {
    require_root();
    let topo = RemoteEndTopology::new(name).unwrap();
    let netns = topo.lab().ns_path(&topo.server_ns);
    let sidecar = Container::start(&format!("{name}-side"), &netns);
    let web = Container::run(&format!("{name}-web"), &netns, &httpd(WEB_PORT_TEXT));
    wait_for_listener(&topo.server_ns, WEB_PORT);
    let tracer = start_tracer();
    let run = scenario::remote_ack_loop_to(&topo, WEB_PORT, Duration::from_secs(3)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let report = tracer.finish().unwrap();

    let loops: Vec<&Value> = in_ns(&report, &topo.server_ns).into_iter().filter(|f| f["kind"] == "ack_loop").collect();
    assert_eq!(loops.len(), 1, "{:#}", report["findings"]);
    assert_eq!(loops[0]["local"][0], run.server.to_string(), "{:#}", loops[0]);
    assert_names(&loops[0]["workload"], &web, loops[0]);
    let rows: Vec<&Value> = report["syn_funnel"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["netns"] == topo.server_ns.as_str() && r["port"] == WEB_PORT)
        .collect();
    assert_eq!(rows.len(), 1, "{:#}", report["syn_funnel"]);
    assert_names(&rows[0]["workload"], &web, rows[0]);
    drop(sidecar);
}

const WEB_PORT: u16 = 8080;
const WEB_PORT_TEXT: &str = "8080";

/// Waits (at most 5 s) until something listens on `port` in namespace `ns`.
fn wait_for_listener(ns: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new("ip").args(["netns", "exec", ns, "ss", "-Hltn", &format!("sport = :{port}")]).output().unwrap();
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "nothing listens on port {port} in {ns}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The agent's `containers` filter follows containers that start after it: the filter names a
/// container not yet running, and once it runs its namespace's findings are exported; the same
/// incident in another container's namespace is not.
#[test]
fn the_agent_container_filter_covers_a_container_started_later_and_no_other() {
    require_root();
    let (chosen_topo, other_topo) = (PawsTopology::new("ctrflt").unwrap(), PawsTopology::new("ctrflto").unwrap());
    let dir = TempDir::new("containerfilter");
    let chosen_name = format!("netdiag-flt-srv-{}", std::process::id());
    let config = format!("interval_s = 0.5\n[filters]\ncontainers = [\"{chosen_name}\"]\n");
    let agent = Agent::start(&dir.0, &config);
    let chosen = Container::start("flt-srv", &chosen_topo.server_path());
    assert_eq!(chosen.name, chosen_name);
    let other = Container::start("flt-other", &other_topo.server_path());
    std::thread::sleep(Duration::from_secs(2));
    let other_run = scenario::paws_time_wait(&other_topo).unwrap();
    let run = scenario::paws_time_wait(&chosen_topo).unwrap();

    let client_addr = CLIENT_V4.to_string();
    let series = |topo: &PawsTopology, container: &Container, metrics: &str| {
        let workload = format!("container/{}", container.name);
        let labels =
            [("peer", client_addr.as_str()), ("variant", "time_wait"), ("netns", topo.server_ns.as_str()), ("workload", &workload)];
        value_of(metrics, "netdiag_paws_rejections_total", &labels)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut metrics = agent.metrics();
    while series(&chosen_topo, &chosen, &metrics) != Some(run.injected as f64) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        metrics = agent.metrics();
    }
    assert_eq!(series(&chosen_topo, &chosen, &metrics), Some(run.injected as f64), "{metrics}");
    assert!(other_run.injected > 0);
    assert_eq!(series(&other_topo, &other, &metrics), None, "outside the filter: {metrics}");
    assert!(!metrics.contains(other_topo.server_ns.as_str()), "{metrics}");
    agent.stop();
}
