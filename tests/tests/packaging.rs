//! What a fleet deploys, each checked for real: the .deb installed with dpkg into a fresh Debian
//! root, its binary run there and the package purged without a trace; the Kubernetes DaemonSet
//! validated against the API schemas, with the systemd unit's capabilities; the container image
//! built with podman and run as the DaemonSet runs it (its capabilities, mounts, arguments and
//! memory limit), counting a PAWS incident; the Grafana dashboard's queries parsed by promtool,
//! their metrics all exported by a real agent.
//!
//! The slow steps are cached under target/: the Debian base (debootstrap, once), the static
//! release binary (the one `cargo xtask vmtest` builds too). A missing tool fails the test with
//! what installs it.
use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use netdiag::scenario::{self, CLIENT_V4, PawsTopology};
use netdiag_tests::{
    agent::{Agent, BpfIds, TempDir, checked, http_get, value_of, wait_until_serving},
    require_root,
};
use serde_json::Value;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const DAEMONSET: &str = "ops/kubernetes/netdiag-agent.yaml";
const UNIT: &str = "ops/netdiag-agent.service";
const DASHBOARD: &str = "ops/grafana/netdiag-agent.json";

fn repo(path: &str) -> PathBuf {
    Path::new(REPO).join(path)
}

/// Fails the test, saying what installs it, when a tool is not on PATH.
fn require_tool(tool: &str, installed_by: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    assert!(found, "{tool} is not installed: {installed_by}");
}

/// Runs one of the ops/ scripts as the README does; what it prints last is its result (a path
/// or an image name).
fn ops_script(script: &str, args: &[&str]) -> String {
    let out = Command::new(repo(script)).args(args).current_dir(REPO).stderr(Stdio::inherit()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{script} failed ({}): {stdout}", out.status);
    stdout.lines().last().unwrap_or_default().trim().to_string()
}

fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// kubernetes-validate, as a module of the python3 it was installed for (its script may not be
/// on PATH yet, behind pyenv's shims).
fn kubernetes_validate() -> Command {
    let installed = Command::new("python3").args(["-m", "kubernetes_validate", "--version"]).output();
    assert!(
        installed.is_ok_and(|o| o.status.success()),
        "kubernetes-validate is not installed for python3: cargo xtask setup installs it from PyPI"
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "kubernetes_validate"]);
    cmd
}

/// The manifest's documents as JSON, read by PyYAML (kubernetes-validate depends on it).
fn manifest_documents() -> Vec<Value> {
    kubernetes_validate();
    let json = checked(
        Command::new("python3")
            .args(["-c", "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"])
            .arg(repo(DAEMONSET)),
    );
    serde_json::from_str(&json).unwrap()
}

fn document<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("{DAEMONSET} has no {kind}"))
}

/// The capabilities (without `CAP_`) of a systemd unit's CapabilityBoundingSet.
fn unit_capabilities(unit: &str) -> BTreeSet<String> {
    let line = unit.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).expect("the unit bounds capabilities");
    line.split_whitespace().map(|c| c.trim_start_matches("CAP_").to_string()).collect()
}

fn capability_number(name: &str) -> u32 {
    match name {
        "SETPCAP" => 8,
        "SYS_PTRACE" => 19,
        "SYS_ADMIN" => 21,
        "PERFMON" => 38,
        "BPF" => 39,
        other => panic!("capability {other} is not one the agent is known to use"),
    }
}

/// The capability sets of a process (CapEff, CapPrm, CapBnd, CapAmb), as bit masks.
fn capability_sets(pid: u32) -> Vec<(String, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    ["CapEff:", "CapPrm:", "CapBnd:", "CapAmb:"]
        .iter()
        .map(|set| {
            let hex = status.lines().find_map(|l| l.strip_prefix(set)).unwrap();
            (set.to_string(), u64::from_str_radix(hex.trim(), 16).unwrap())
        })
        .collect()
}

/// A process whose stderr is read on a thread, line by line, until it prints the agent's
/// ready line: the address it serves. Killed on drop.
struct Started {
    child: Child,
    addr: std::net::SocketAddr,
}

fn start_until_ready(mut cmd: Command, what: &str) -> Started {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
    let addr = wait_until_serving(&mut child, what, Duration::from_secs(90));
    Started { child, addr }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sigterm_and_wait(child: &mut Child) -> std::process::ExitStatus {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap()
}

/// Every file and directory under `root`, relative, but dpkg's own records.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeSet<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            if relative.starts_with("var/lib/dpkg") || relative.starts_with("var/log") {
                continue;
            }
            into.insert(relative);
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, into);
            }
        }
    }
    let mut all = BTreeSet::new();
    walk(root, root, &mut all);
    all
}

/// The .deb of ops/deb/build.sh holds the binary, unit, config, man page and completions; dpkg
/// installs it into a fresh Debian root, the installed binary runs the agent with the installed
/// config and exactly the installed unit's capabilities, and a purge leaves the root as it was.
#[test]
fn the_deb_installs_into_a_fresh_debian_root_runs_and_purges_cleanly() {
    require_root();
    require_tool("cargo-deb", "cargo xtask setup installs it from crates.io");
    require_tool("debootstrap", "cargo xtask setup installs it (Debian package)");
    let deb = repo(&ops_script("ops/deb/build.sh", &[]));
    assert!(deb.is_file() && deb.extension().is_some_and(|e| e == "deb"), "ops/deb/build.sh made {deb:?}");
    let info = checked(Command::new("dpkg-deb").arg("--field").arg(&deb).args(["Package", "Version"]));
    assert!(info.contains("Package: netdiag") && info.contains("Version: 0.1.0"), "{info}");
    // The binary is static: the package needs nothing of the system it lands on.
    let depends = checked(Command::new("dpkg-deb").arg("--field").arg(&deb).arg("Depends"));
    assert!(depends.trim().is_empty(), "a static binary's package depends on nothing: {depends}");

    let root = TempDir::new("debroot");
    let base = ops_script("ops/image/debian-base.sh", &[]);
    checked(Command::new("tar").arg("-C").arg(&root.0).arg("-xf").arg(repo(&base)));
    let before = tree(&root.0);
    checked(Command::new("dpkg").arg("--root").arg(&root.0).arg("--install").arg(&deb));
    let status = checked(Command::new("dpkg").arg("--root").arg(&root.0).args(["--status", "netdiag"]));
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(status.contains("/etc/netdiag/agent.toml"), "the config is a conffile, kept across upgrades: {status}");
    let installed = |path: &str| root.0.join(path);
    for path in [
        "usr/bin/netdiag",
        "usr/lib/systemd/system/netdiag-agent.service",
        "etc/netdiag/agent.toml",
        "usr/share/man/man1/netdiag.1.gz",
        "usr/share/bash-completion/completions/netdiag",
        "usr/share/zsh/vendor-completions/_netdiag",
        "usr/share/fish/vendor_completions.d/netdiag.fish",
    ] {
        assert!(installed(path).is_file(), "{path} is not installed");
    }

    // The installed binary, in the installed system.
    let version = checked(Command::new("chroot").arg(&root.0).args(["/usr/bin/netdiag", "--version"]));
    assert!(version.starts_with("netdiag 0.1.0"), "{version}");
    // The man page renders without a groff warning; the bash completion parses.
    let page = checked(Command::new("sh").arg("-c").arg("zcat \"$0\" | groff -man -Tutf8 -ww -z 2>&1").arg(installed("usr/share/man/man1/netdiag.1.gz")));
    assert!(page.trim().is_empty(), "groff: {page}");
    checked(Command::new("bash").arg("-n").arg(installed("usr/share/bash-completion/completions/netdiag")));
    // The installed unit starts the installed binary with the installed config. The fresh root
    // has no systemd: the host's verifies it, pointed at the binary in that root (it checks that
    // ExecStart's binary exists); any message fails.
    let unit = std::fs::read_to_string(installed("usr/lib/systemd/system/netdiag-agent.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/netdiag agent --config /etc/netdiag/agent.toml "), "{unit}");
    let copy = root.0.join("tmp/netdiag-agent.service");
    std::fs::write(&copy, unit.replace("/usr/bin/netdiag", &installed("usr/bin/netdiag").display().to_string())).unwrap();
    let verify = checked(Command::new("systemd-analyze").arg("verify").arg(&copy));
    assert!(verify.trim().is_empty(), "systemd-analyze verify: {verify}");
    std::fs::remove_file(&copy).unwrap();

    // The agent as the unit runs it: root with the unit's capabilities only (bounding and
    // ambient, as systemd sets them), the installed config; a free port instead of 9465.
    let caps: Vec<String> = unit_capabilities(&unit).iter().map(|c| format!("+{}", c.to_lowercase())).collect();
    let caps = format!("-all,{}", caps.join(","));
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--bounding-set={caps}"))
        .arg(format!("--inh-caps={caps}"))
        .arg(format!("--ambient-caps={caps}"))
        .arg(installed("usr/bin/netdiag"))
        .args(["agent", "--config"])
        .arg(installed("etc/netdiag/agent.toml"))
        .arg(format!("--listen=127.0.0.1:{}", free_loopback_port()))
        .stdout(Stdio::null());
    let mut agent = start_until_ready(cmd, "the installed agent with the unit's capabilities");
    let (code, body) = http_get(agent.addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    assert!(value_of(&body, "netdiag_hook_active", &[("hook", "paws_checks")]) == Some(1.0), "{body}");
    assert!(sigterm_and_wait(&mut agent.child).success(), "the installed agent did not stop cleanly on SIGTERM");

    // Remove keeps the conffile (Debian's rule), purge takes it too: then nothing is left.
    checked(Command::new("dpkg").arg("--root").arg(&root.0).args(["--remove", "netdiag"]));
    assert!(!installed("usr/bin/netdiag").exists() && installed("etc/netdiag/agent.toml").exists());
    checked(Command::new("dpkg").arg("--root").arg(&root.0).args(["--purge", "netdiag"]));
    let after = tree(&root.0);
    let added: Vec<_> = after.difference(&before).collect();
    let removed: Vec<_> = before.difference(&after).collect();
    assert!(added.is_empty() && removed.is_empty(), "after purge: left {added:?}, lost {removed:?}");
}

/// The DaemonSet passes the Kubernetes 1.37 schemas strictly (a misspelt field fails them, so
/// the check is live), grants exactly the systemd unit's capabilities and runs the image
/// ops/image/build.sh tags, with the host namespaces, mounts, probe, limits and scrape
/// annotations a node agent needs.
#[test]
fn the_daemonset_passes_the_kubernetes_schemas_and_grants_the_units_capabilities() {
    let text = checked(kubernetes_validate().args(["--strict"]).arg(repo(DAEMONSET)));
    for kind in ["namespace", "configmap", "daemonset"] {
        assert!(text.contains(&format!("passed for resource {kind}/")), "{text}");
    }
    let dir = TempDir::new("k8s");
    let misspelt = dir.0.join("misspelt.yaml");
    let manifest = std::fs::read_to_string(repo(DAEMONSET)).unwrap();
    std::fs::write(&misspelt, manifest.replace("hostPID: true", "hostPid: true")).unwrap();
    let out = kubernetes_validate().args(["--strict"]).arg(&misspelt).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stdout).contains("'hostPid' was unexpected"), "{out:?}");

    let documents = manifest_documents();
    let spec = &document(&documents, "DaemonSet")["spec"]["template"]["spec"];
    assert_eq!((&spec["hostNetwork"], &spec["hostPID"]), (&Value::Bool(true), &Value::Bool(true)));
    let container = &spec["containers"][0];
    let security = &container["securityContext"];
    let granted: BTreeSet<String> =
        security["capabilities"]["add"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let unit = unit_capabilities(&std::fs::read_to_string(repo(UNIT)).unwrap());
    assert_eq!(granted, unit, "the DaemonSet and the systemd unit grant the same capabilities");
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_ne!(security["privileged"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(container["image"], format!("netdiag-agent:{version}"), "the tag ops/image/build.sh gives");

    // Read-only mounts only: (volume name, mount path).
    let read_only_mounts: Vec<(&str, &str)> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["readOnly"] == true)
        .map(|m| (m["name"].as_str().unwrap(), m["mountPath"].as_str().unwrap()))
        .collect();
    // Every directory the agent reads the runtimes' metadata from, at the same path as on the host.
    let runtime_dirs: Vec<String> =
        netdiag::workload::metadata::Roots::default().dirs().iter().map(|dir| dir.to_str().unwrap().to_string()).collect();
    let required = ["/sys/kernel/btf", "/sys/kernel/tracing", "/run/netns"].into_iter().chain(runtime_dirs.iter().map(String::as_str));
    for host in required {
        let volume = spec["volumes"].as_array().unwrap().iter().find(|v| v["hostPath"]["path"] == host);
        let name = volume.unwrap_or_else(|| panic!("no hostPath volume for {host}"))["name"].as_str().unwrap();
        assert!(read_only_mounts.contains(&(name, host)), "{host} is not mounted read-only at {host}: {read_only_mounts:?}");
    }
    let probe = &container["readinessProbe"]["httpGet"];
    assert_eq!((&probe["path"], &probe["port"]), (&Value::from("/metrics"), &Value::from("metrics")));
    assert_eq!(container["ports"][0]["containerPort"], 9465);
    for bound in ["cpu", "memory"] {
        assert!(container["resources"]["limits"][bound].is_string() && container["resources"]["requests"][bound].is_string());
    }
    let annotations = &document(&documents, "DaemonSet")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!((&annotations["prometheus.io/scrape"], &annotations["prometheus.io/port"]), (&Value::from("true"), &Value::from("9465")));
    // The ConfigMap is a config the agent accepts.
    let config = document(&documents, "ConfigMap")["data"]["agent.toml"].as_str().unwrap();
    netdiag::agent::config::Config::parse(config).unwrap();
}

/// The OCI runtime the image test runs the container with (Debian's runc package).
const RUNTIME: &str = "runc";

/// `256Mi` → podman's `256m`; `500m` CPU → `0.5`.
fn podman_memory(quantity: &str) -> String {
    let mib = quantity.strip_suffix("Mi").unwrap_or_else(|| panic!("memory limit {quantity} is not in Mi"));
    format!("{mib}m")
}

fn podman_cpus(quantity: &str) -> String {
    let milli: f64 = quantity.strip_suffix('m').unwrap_or_else(|| panic!("cpu limit {quantity} is not in m")).parse().unwrap();
    format!("{}", milli / 1000.0)
}

/// The image and the container made from it are removed on drop; the Debian base stays cached.
struct Image {
    name: String,
    container: String,
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rm", "--force", "--ignore", &self.container]).output();
        let _ = Command::new("podman").args(["rmi", "--force", &self.name]).output();
    }
}

/// ops/image/build.sh builds the image with podman; it runs as the DaemonSet runs it (host
/// network and PID namespace, the manifest's capabilities and nothing else, its hostPath mounts,
/// its ConfigMap and arguments, its memory and CPU limits, a read-only root and the default
/// seccomp profile): /metrics serves, a PAWS incident in a namespace the test made is counted
/// for its peer and written as a JSON line on stdout, the agent keeps only the capabilities it
/// needs once attached, and `podman stop` leaves no program attached.
#[test]
fn the_image_builds_and_runs_the_agent_as_the_daemonset_does() {
    require_root();
    require_tool("podman", "cargo xtask setup installs it (Debian package)");
    require_tool(RUNTIME, "cargo xtask setup installs it (Debian package)");
    require_tool("debootstrap", "cargo xtask setup installs it (Debian package)");
    let documents = manifest_documents();
    let daemonset = document(&documents, "DaemonSet");
    let spec = &daemonset["spec"]["template"]["spec"];
    let container = &spec["containers"][0];

    let tag = format!("localhost/netdiag-agent:packaging-test-{}", std::process::id());
    let image = Image { name: ops_script("ops/image/build.sh", &[&tag]), container: format!("netdiag-packaging-test-{}", std::process::id()) };
    assert_eq!(image.name, tag);
    let config = checked(Command::new("podman").args(["image", "inspect", "--format", "{{json .Config}}", &image.name]));
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/bin/netdiag"]), "{config}");

    let topo = PawsTopology::new("pkgimg").unwrap();
    // The ConfigMap's config, with a short cycle and only this test's namespace (other tests
    // may cause PAWS drops elsewhere meanwhile).
    let dir = TempDir::new("image");
    let configmap = document(&documents, "ConfigMap")["data"]["agent.toml"].as_str().unwrap();
    assert!(configmap.contains("interval_s = 5\n"), "{configmap}");
    let config_dir = dir.0.join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("agent.toml"),
        format!("{}\n[filters]\nnetns = [\"{}\"]\n", configmap.replace("interval_s = 5\n", "interval_s = 0.5\n"), topo.server_ns),
    )
    .unwrap();

    let mut podman = Command::new("podman");
    // runc, not podman's default crun: crun refuses this machine's hybrid cgroup v1/v2 layout.
    podman.arg(format!("--runtime={RUNTIME}"));
    podman.args(["run", "--rm", "--name", &image.container, "--network=host", "--pid=host", "--read-only"]);
    // Fixed resource limits: podman's defaults raise them, which this machine's sandbox refuses
    // (a kubelet leaves them to the node's runtime). The agent holds far fewer files.
    podman.args(["--ulimit=nofile=4096:4096", "--ulimit=nproc=4096:4096"]);
    assert_eq!((&spec["hostNetwork"], &spec["hostPID"]), (&Value::Bool(true), &Value::Bool(true)));
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    podman.arg(format!("--user={}", security["runAsUser"]));
    podman.arg("--cap-drop=all");
    let granted: Vec<&str> = security["capabilities"]["add"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    for cap in &granted {
        podman.arg(format!("--cap-add=CAP_{cap}"));
    }
    let limits = &container["resources"]["limits"];
    podman.arg(format!("--memory={}", podman_memory(limits["memory"].as_str().unwrap())));
    podman.arg(format!("--cpus={}", podman_cpus(limits["cpu"].as_str().unwrap())));
    for mount in container["volumeMounts"].as_array().unwrap() {
        let volume = spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap();
        let source = if volume["configMap"].is_object() {
            config_dir.display().to_string()
        } else {
            let path = volume["hostPath"]["path"].as_str().unwrap();
            // As the kubelet does for this type: a node without it gets an empty directory.
            if volume["hostPath"]["type"] == "DirectoryOrCreate" {
                std::fs::create_dir_all(path).unwrap();
            }
            path.to_string()
        };
        let mut options = vec![if mount["readOnly"] == true { "ro" } else { "rw" }];
        if mount["mountPropagation"] == "HostToContainer" {
            options.push("rslave");
        }
        podman.arg(format!("--volume={source}:{}:{}", mount["mountPath"].as_str().unwrap(), options.join(",")));
    }
    podman.arg(&image.name);
    // The manifest's arguments, the node's address being loopback here, on a free port.
    let port = free_loopback_port();
    for arg in container["args"].as_array().unwrap() {
        podman.arg(arg.as_str().unwrap().replace("$(NODE_IP):9465", &format!("127.0.0.1:{port}")));
    }
    podman.stdout(Stdio::piped());
    let mut agent = start_until_ready(podman, "the agent's container");
    assert_eq!(agent.addr.port(), port);
    let stdout = agent.child.stdout.take().unwrap();
    let (lines_tx, json_lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });

    let pid: u32 = checked(Command::new("podman").args(["inspect", "--format", "{{.State.Pid}}", &image.container])).trim().parse().unwrap();
    let attached = BpfIds::held_by(pid);
    assert!(!attached.links.is_empty(), "the containerised agent serves but holds no BPF link");
    // Attached: of the capabilities granted, only BPF, SYS_ADMIN and SYS_PTRACE are left.
    let kept: u64 = ["BPF", "SYS_ADMIN", "SYS_PTRACE"].iter().map(|c| 1u64 << capability_number(c)).sum();
    let granted_mask: u64 = granted.iter().map(|c| 1u64 << capability_number(c)).sum();
    for (set, mask) in capability_sets(pid) {
        assert_eq!(mask & !kept, 0, "{set} {mask:#x} after attaching (granted {granted_mask:#x})");
    }

    let run = scenario::paws_established(&topo, false, 5).unwrap();
    let client = CLIENT_V4.to_string();
    let labels = [("peer", client.as_str()), ("variant", "established"), ("netns", topo.server_ns.as_str())];
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let (code, body) = http_get(agent.addr, "/metrics");
        assert_eq!(code, 200, "{body}");
        if value_of(&body, "netdiag_paws_rejections_total", &labels) == Some(run.injected as f64) {
            break body;
        }
        assert!(Instant::now() < deadline, "the container never counted {} PAWS drops for {CLIENT_V4}: {body}", run.injected);
        std::thread::sleep(Duration::from_millis(300));
    };
    // It runs under the manifest's memory limit, which holds the process and the kernel maps
    // it created (both are charged to the container's memory cgroup).
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let memory_cgroup_file = |v2: &str, v1: &str| -> Option<f64> {
        // cgroup v2's file, else v1's memory controller's.
        cgroup
            .lines()
            .filter_map(|l| l.split_once(":memory:").or_else(|| l.split_once("::")).map(|(_, path)| path))
            .flat_map(|path| [format!("/sys/fs/cgroup{path}/{v2}"), format!("/sys/fs/cgroup/memory{path}/{v1}")])
            .find_map(|file| std::fs::read_to_string(file).ok()?.trim().parse().ok())
    };
    let limit = memory_cgroup_file("memory.max", "memory.limit_in_bytes").expect("no memory limit file for the container");
    let limit_mib: f64 = limits["memory"].as_str().unwrap().trim_end_matches("Mi").parse().unwrap();
    assert_eq!(limit, limit_mib * 1048576.0, "the container's memory limit is the manifest's");
    let charged = memory_cgroup_file("memory.current", "memory.usage_in_bytes").unwrap();
    let rss = value_of(&metrics, "netdiag_process_resident_memory_bytes", &[]).unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    eprintln!(
        "containerised agent: {:.1} MiB resident, {:.1} MiB charged to its cgroup (limit {limit_mib} MiB), {fds} open files",
        rss / 1048576.0,
        charged / 1048576.0
    );
    let line = json_lines.recv_timeout(Duration::from_secs(10)).expect("no JSON line on the container's stdout");
    let line: Value = serde_json::from_str(&line).unwrap();
    assert_eq!((&line["event"], &line["kind"], &line["peer"]), (&Value::from("open"), &Value::from("paws_rejections"), &Value::from(client.as_str())), "{line}");

    // As the kubelet stops it: SIGTERM to the container, status 0, nothing left in the kernel.
    checked(Command::new("podman").args(["stop", "--time=15", &image.container]));
    let status = agent.child.wait().unwrap();
    assert!(status.success(), "the container exited with {status} on SIGTERM");
    let left = attached.still_in_kernel();
    assert!(left.progs.is_empty() && left.links.is_empty(), "still in the kernel after the container stopped: {left:?}");
}

/// Every query of the dashboard (panel targets, the host variable's metric) with Grafana's
/// variables set as Grafana would.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn panels<'a>(list: &'a Value, into: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            into.push(panel);
            panels(&panel["panels"], into);
        }
    }
    let mut all = Vec::new();
    panels(&dashboard["panels"], &mut all);
    let expand = |expr: &str| {
        expr.replace("$__rate_interval", "1m").replace("$__range", "6h").replace("$__interval", "15s").replace("$instance", ".*")
    };
    let mut queries: Vec<(String, String)> = all
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten().map(move |t| (p["title"].as_str().unwrap().to_string(), t)))
        .map(|(title, t)| (title, expand(t["expr"].as_str().unwrap())))
        .collect();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(query) = variable["query"]["query"].as_str() else { continue };
        // label_values(SELECTOR, LABEL) is Grafana's; its selector is PromQL.
        let selector = query.strip_prefix("label_values(").and_then(|q| q.rsplit_once(',')).map(|(s, _)| s).unwrap();
        queries.push((format!("variable {}", variable["name"]), selector.to_string()));
    }
    queries
}

/// The dashboard's queries parse (promtool, each as a recording rule), cover every finding
/// kind's rate and top peers, ACK loops and the agent's cost, and use only metrics a real agent
/// exports while it sees an incident of every kind.
#[test]
fn every_dashboard_query_parses_and_uses_only_metrics_a_real_agent_exports() {
    require_root();
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(repo(DASHBOARD)).unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "netdiag-agent");
    let queries = dashboard_queries(&dashboard);
    let dir = TempDir::new("dash");
    let rules: String = queries
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| format!("      - record: dashboard:query_{i}\n        expr: {}\n", serde_json::to_string(expr).unwrap()))
        .collect();
    let rules_file = dir.0.join("dashboard_rules.yml");
    std::fs::write(&rules_file, format!("groups:\n  - name: dashboard\n    rules:\n{rules}")).unwrap();
    let text = checked(Command::new("promtool").args(["check", "rules"]).arg(&rules_file));
    assert!(text.contains(&format!("{} rules found", queries.len())), "{text}");

    let used: BTreeSet<String> = queries
        .iter()
        .flat_map(|(_, expr)| {
            expr.match_indices("netdiag_").map(|(at, _)| {
                expr[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>()
            })
        })
        .collect();
    let kinds = ["paws_rejections", "ack_loop", "out_of_window_flood", "unanswered_syns", "nat_timestamp_clocks"];
    let per_kind = kinds.iter().map(|k| format!("netdiag_{k}_total"));
    let own_cost = ["netdiag_process_cpu_seconds_total", "netdiag_process_resident_memory_bytes", "netdiag_bpf_program_run_time_seconds_total"];
    for needed in per_kind.clone().chain(own_cost.map(String::from)).chain(["netdiag_findings_active".to_string()]) {
        assert!(used.contains(&needed), "the dashboard shows nothing of {needed}");
    }
    for family in per_kind {
        assert!(
            queries.iter().any(|(_, q)| q.starts_with("topk(") && q.contains(&family)),
            "no top-peers panel for {family}"
        );
    }

    // A real agent sees every kind of finding: a PAWS incident, an ACK loop and an out-of-window
    // flood, hosts behind a NAT whose reconnect PAWS rejects (unanswered SYNs, several clocks);
    // with the kernel's accounting of its programs.
    let paws = PawsTopology::new("pkgdash").unwrap();
    let ack_loop = scenario::LoopTopology::new("pkgdashl").unwrap();
    // A flood of its own: on the loop's flow it would read as more of the loop.
    let flood = scenario::LoopTopology::new("pkgdashf").unwrap();
    let nat = scenario::NatTopology::new("pkgdashn", 2, 1).unwrap();
    let watched = [&paws.server_ns, &ack_loop.client_ns, &ack_loop.server_ns, &flood.client_ns, &flood.server_ns, &nat.server_ns];
    let netns: Vec<String> = watched.iter().map(|ns| format!("\"{ns}\"")).collect();
    // Deep hooks always: on demand, the receive program is armed by the NAT reconnect's first
    // rejections, and under load that came after the only SYNs this scenario sends (seen in a
    // run with the machine busy: no unanswered_syns series). Arming is the agent tests' subject.
    let config = format!("interval_s = 0.5\nbpf_stats = true\ndeep_hooks = \"always\"\n[filters]\nnetns = [{}]\n", netns.join(", "));
    let agent = Agent::start(&dir.0, &config);
    scenario::paws_established(&paws, false, 3).unwrap();
    scenario::start_ack_loop(&ack_loop, Duration::from_secs(3)).unwrap().finish().unwrap();
    scenario::oow_flood(&flood, 200, Duration::from_secs(3)).unwrap();
    let _listening = scenario::nat_time_wait(&nat).unwrap();
    let exported = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_string)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = agent.metrics();
        let names = exported(&text);
        let missing: Vec<&String> = used.difference(&names).collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the dashboard uses metrics the agent does not export: {missing:?}\n{text}");
        std::thread::sleep(Duration::from_millis(300));
    }
    agent.stop();
}
