//! Workload attribution: the container, pod or host behind a network namespace, from the
//! processes in it (`/proc/*/ns/net`), their cgroup paths and the runtimes' metadata on disk.
//!
//! A [`Table`] is one scan of `/proc`; [`Workloads`] keeps the last one, rescanned on a thread
//! of its own when a namespace appears. Scans read files only, never on the ring-buffer path.
pub mod addresses;
pub mod cgroup;
pub mod metadata;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
    os::unix::fs::MetadataExt as _,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde::Serialize;

use crate::netns;
use cgroup::CgroupOwner;
use metadata::{ContainerMeta, Roots};

/// Who is behind a namespace; fields are present only when known.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Workload {
    /// `container`, `pod`, `netns` or `host`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Container id (64 hex digits), or the pod uid for a pod of several containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Container name, pod name, `ip netns` name or systemd unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Kubernetes pod and namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// How long an id is shown in text: as `docker ps` and `podman ps` show it.
const SHORT_ID: usize = 12;

impl Workload {
    fn host() -> Workload {
        Workload { kind: "host", ..Workload::default() }
    }

    /// For a person: `container web (podman 240d9ab4321e, pod shop/web-0)`, `pod shop/web-0`,
    /// `netns srv`, `host`.
    pub fn describe(&self) -> String {
        let id = self.id.as_deref().map(|id| &id[..id.len().min(SHORT_ID)]);
        let pod = match (&self.namespace, &self.pod) {
            (Some(ns), Some(pod)) => Some(format!("{ns}/{pod}")),
            (None, Some(pod)) => Some(pod.clone()),
            _ => None,
        };
        let mut text = self.kind.to_string();
        match self.kind {
            "pod" => text += &format!(" {}", pod.clone().or(self.name.clone()).unwrap_or_default()),
            _ => {
                if let Some(name) = self.name.as_deref().or(id) {
                    text += &format!(" {name}");
                }
            }
        }
        let mut detail: Vec<String> = Vec::new();
        if self.kind == "container" {
            detail.push([self.runtime.as_deref(), id].into_iter().flatten().collect::<Vec<_>>().join(" "));
            detail.extend(pod.map(|p| format!("pod {p}")));
        }
        detail.retain(|d| !d.is_empty());
        if !detail.is_empty() {
            text += &format!(" ({})", detail.join(", "));
        }
        text
    }

    pub fn is_container_or_pod(&self) -> bool {
        matches!(self.kind, "container" | "pod")
    }

    /// One short label value for metrics: `container/web`, `pod/shop/web-0`, `netns/srv`, `host`.
    pub fn label(&self) -> String {
        let name = match self.kind {
            "pod" => [self.namespace.as_deref(), self.pod.as_deref().or(self.name.as_deref())]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("/"),
            _ => self.name.clone().or_else(|| self.id.as_deref().map(|id| id[..id.len().min(SHORT_ID)].to_string())).unwrap_or_default(),
        };
        if name.is_empty() { self.kind.to_string() } else { format!("{}/{name}", self.kind) }
    }

    /// Whether `--container TEXT` means this one: its name, its full id or an id prefix of at
    /// least 12 digits.
    pub fn is_container(&self, text: &str) -> bool {
        self.kind == "container"
            && (self.name.as_deref() == Some(text)
                || self.id.as_deref().is_some_and(|id| text.len() >= SHORT_ID && id.starts_with(text)))
    }

    /// Whether `--pod NAMESPACE/NAME` means this one (a pod, or a container of that pod).
    pub fn is_pod(&self, namespace: &str, name: &str) -> bool {
        self.namespace.as_deref() == Some(namespace) && self.pod.as_deref() == Some(name)
    }
}

/// One namespace as a scan found it.
#[derive(Clone, Debug)]
struct Entry {
    workload: Workload,
    /// Each container in the namespace (one, or a pod's), for `--container`.
    containers: Vec<Workload>,
    /// Addresses the namespace holds (for naming a peer that lives on this host).
    addresses: Vec<IpAddr>,
}

/// One scan: every namespace some process is in, and the named ones with none.
#[derive(Clone, Debug, Default)]
pub struct Table {
    by_netns: HashMap<u32, Entry>,
    /// Containers by the id of their cgroup (v2), which the kernel programs read off sockets.
    by_cgroup: HashMap<u64, Workload>,
    /// Kept from scan to scan: a container's metadata does not change while it runs.
    metadata: HashMap<String, ContainerMeta>,
}

/// What the processes of one namespace say.
#[derive(Default)]
struct Seen {
    /// Container id → (runtime, pod uid, lowest pid in it).
    containers: HashMap<String, (Option<&'static str>, Option<String>, u32)>,
    /// Container id → the ids of the cgroups (v2) its processes are in.
    cgroups: HashMap<String, BTreeSet<u64>>,
    units: BTreeSet<String>,
    /// A process to read the namespace's addresses through.
    pid: u32,
}

impl Table {
    /// Reads `/proc` and the runtimes' metadata under `roots`; `previous` lends its metadata.
    fn scan(roots: &Roots, previous: HashMap<String, ContainerMeta>) -> Table {
        let mut seen: HashMap<u32, Seen> = HashMap::new();
        let unified = host_hierarchy();
        for pid in pids() {
            let proc_dir = format!("/proc/{pid}");
            let Ok(inode) = std::fs::metadata(format!("{proc_dir}/ns/net")).map(|m| m.ino() as u32) else { continue };
            let ns = seen.entry(inode).or_insert_with(|| Seen { pid, ..Seen::default() });
            let proc_cgroup = std::fs::read_to_string(format!("{proc_dir}/cgroup")).unwrap_or_default();
            match cgroup::owner_of(&proc_cgroup) {
                Some(CgroupOwner::Container { runtime, id, pod_uid }) => {
                    // A cgroup's id is its directory's inode in the unified hierarchy.
                    let cgroup_id = unified.as_ref().zip(cgroup::unified_path(&proc_cgroup)).and_then(|(mount, path)| {
                        std::fs::metadata(mount.join(path.trim_start_matches('/'))).ok().map(|m| m.ino())
                    });
                    ns.cgroups.entry(id.clone()).or_default().extend(cgroup_id);
                    let slot = ns.containers.entry(id).or_insert((runtime, pod_uid, pid));
                    slot.2 = slot.2.min(pid);
                }
                Some(CgroupOwner::Unit(unit)) => {
                    ns.units.insert(unit);
                }
                None => {}
            }
        }
        let mut metadata = previous;
        metadata.retain(|id, _| seen.values().any(|s| s.containers.contains_key(id)));
        let root = netns::root_inode().ok();
        let named = netns::named().unwrap_or_default();
        let mut by_netns = HashMap::new();
        let mut by_cgroup = HashMap::new();
        for (inode, ns) in &seen {
            for (id, (runtime, _, _)) in &ns.containers {
                if !metadata.contains_key(id) {
                    let meta = roots.read(*runtime, id);
                    // Kept only once found: files still being written are read again next scan.
                    if meta != ContainerMeta::default() {
                        metadata.insert(id.clone(), meta);
                    }
                }
            }
            let containers: Vec<Workload> = ns
                .containers
                .iter()
                .map(|(id, (runtime, _, _))| container_workload(id, *runtime, metadata.get(id).cloned().unwrap_or_default()))
                .collect();
            for container in &containers {
                let cgroups = container.id.as_ref().and_then(|id| ns.cgroups.get(id)).into_iter().flatten();
                by_cgroup.extend(cgroups.map(|cgroup| (*cgroup, container.clone())));
            }
            let workload = if Some(*inode) == root {
                Workload::host()
            } else {
                let ip_name = named.iter().find(|n| n.inode == *inode).map(|n| n.name.clone());
                workload_of(ns, &metadata, ip_name)
            };
            let read = |file: &str| std::fs::read_to_string(format!("/proc/{}/net/{file}", ns.pid)).unwrap_or_default();
            let mut addresses = addresses::local_v4(&read("fib_trie"));
            addresses.extend(addresses::local_v6(&read("if_inet6")));
            by_netns.insert(*inode, Entry { workload, containers, addresses });
        }
        for ns in &named {
            by_netns.entry(ns.inode).or_insert_with(|| {
                let workload = if Some(ns.inode) == root { Workload::host() } else { netns_workload(Some(ns.name.clone())) };
                Entry { workload, containers: Vec::new(), addresses: Vec::new() }
            });
        }
        Table { by_netns, by_cgroup, metadata }
    }

    pub fn of(&self, inode: u32) -> Option<&Workload> {
        self.by_netns.get(&inode).map(|e| &e.workload)
    }

    /// The container whose processes are in cgroup `id` (as the kernel read it off a socket).
    pub fn of_cgroup(&self, id: u64) -> Option<&Workload> {
        self.by_cgroup.get(&id)
    }

    /// The workload on this host that holds `addr`, other than namespace `except` (the one
    /// that saw it as a peer). Several holders (parallel labs reuse addresses) name one only if
    /// exactly one of them is a container or pod.
    pub fn holding(&self, addr: IpAddr, except: u32) -> Option<&Workload> {
        let holders: Vec<&Workload> = self
            .by_netns
            .iter()
            .filter(|(inode, e)| **inode != except && e.addresses.contains(&addr))
            .map(|(_, e)| &e.workload)
            .collect();
        let containers: Vec<&Workload> = holders.iter().copied().filter(|w| w.is_container_or_pod()).collect();
        match (holders.as_slice(), containers.as_slice()) {
            ([only], _) | (_, [only]) => Some(only),
            _ => None,
        }
    }

    /// Namespaces whose workload, or one of whose containers, `wanted` accepts.
    pub fn namespaces_of(&self, wanted: impl Fn(&Workload) -> bool) -> Vec<u32> {
        let mut found: Vec<u32> = self
            .by_netns
            .iter()
            .filter(|(_, e)| wanted(&e.workload) || e.containers.iter().any(&wanted))
            .map(|(i, _)| *i)
            .collect();
        found.sort_unstable();
        found
    }
}

#[cfg(test)]
impl Table {
    /// A table of these namespaces' workloads and these cgroups' containers, for other modules' tests.
    pub fn of_namespaces(namespaces: impl IntoIterator<Item = (u32, Workload)>, cgroups: impl IntoIterator<Item = (u64, Workload)>) -> Table {
        let entry = |workload| Entry { workload, containers: Vec::new(), addresses: Vec::new() };
        Table {
            by_netns: namespaces.into_iter().map(|(inode, workload)| (inode, entry(workload))).collect(),
            by_cgroup: cgroups.into_iter().collect(),
            metadata: HashMap::new(),
        }
    }
}

/// The workload of a namespace other than the host's.
fn workload_of(ns: &Seen, metadata: &HashMap<String, ContainerMeta>, ip_name: Option<String>) -> Workload {
    // The first container started in it (lowest pid) stands for the namespace; with a pod, the
    // pod does.
    let mut containers: Vec<_> = ns.containers.iter().collect();
    containers.sort_by_key(|(_, (_, _, pid))| *pid);
    let Some((id, (runtime, pod_uid, _))) = containers.first() else {
        let unit = (ns.units.len() == 1).then(|| ns.units.iter().next().cloned()).flatten();
        return netns_workload(ip_name.or(unit));
    };
    let meta = metadata.get(*id).cloned().unwrap_or_default();
    let runtime = runtime.map(String::from);
    if containers.len() > 1 && (pod_uid.is_some() || meta.pod.is_some()) {
        return Workload {
            kind: "pod",
            runtime,
            id: pod_uid.clone(),
            name: meta.pod.clone(),
            pod: meta.pod,
            namespace: meta.namespace,
        };
    }
    container_workload(id, runtime.as_deref(), meta)
}

fn container_workload(id: &str, runtime: Option<&str>, meta: ContainerMeta) -> Workload {
    Workload {
        kind: "container",
        runtime: runtime.map(String::from),
        id: Some(id.to_string()),
        name: meta.name,
        pod: meta.pod,
        namespace: meta.namespace,
    }
}

fn netns_workload(name: Option<String>) -> Workload {
    Workload { kind: "netns", name, ..Workload::default() }
}

/// The initial cgroup namespace's inode (`PROC_CGROUP_INIT_INO`), the same on every kernel.
const INITIAL_CGROUP_NS: u64 = 0xEFFF_FFFB;

thread_local! {
    /// This thread's way into the host's unified hierarchy, found once: the cgroup namespace
    /// it enters is this thread's for good.
    static HOST_HIERARCHY: std::cell::OnceCell<Option<std::path::PathBuf>> = const { std::cell::OnceCell::new() };
}

/// The unified hierarchy (cgroup2) as the host sees it, where the cgroup paths in
/// `/proc/PID/cgroup` resolve to the directories whose inodes are the ids the kernel programs
/// read off sockets. `None` (and one warning) when it cannot be seen: findings then name the
/// namespace's workload.
fn host_hierarchy() -> Option<std::path::PathBuf> {
    HOST_HIERARCHY.with(|cell| cell.get_or_init(find_host_hierarchy).clone())
}

fn cgroup_ns_of(pid: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/cgroup")).map(|m| m.ino()).ok()
}

fn find_host_hierarchy() -> Option<std::path::PathBuf> {
    if cgroup_ns_of("thread-self").is_none_or(|ns| ns == INITIAL_CGROUP_NS) {
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        return cgroup::unified_mount(&info).map(std::path::PathBuf::from);
    }
    static WARNED: AtomicBool = AtomicBool::new(false);
    enter_host_cgroups()
        .inspect_err(|e| {
            if !WARNED.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "cannot see the host's cgroups from this cgroup namespace ({e:#}): findings name the \
                     namespace's workload, not the container owning the socket"
                );
            }
        })
        .ok()
}

/// In a container of its own cgroup namespace (Kubernetes on cgroup v2) the other containers'
/// cgroup paths read `/../…` and the container's cgroup2 mount shows only its own subtree:
/// this thread enters the host's cgroup namespace through a process in it (PID 1, with
/// `hostPID`) and opens the host's mount through that process's root.
fn enter_host_cgroups() -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context as _;
    use std::os::fd::{AsRawFd as _, IntoRawFd as _};
    let pid = pids()
        .find(|pid| cgroup_ns_of(&pid.to_string()) == Some(INITIAL_CGROUP_NS))
        .context("no process of the host's cgroup namespace is visible (hostPID)")?;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/cgroup"))?;
    // SAFETY: setns on an open namespace fd changes only this thread's cgroup namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWCGROUP) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setns(CLONE_NEWCGROUP)");
    }
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    let mount = cgroup::unified_mount(&info).with_context(|| format!("process {pid} sees no cgroup2 mount"))?;
    let root = format!("/proc/{pid}/root{mount}");
    let dir = std::fs::File::open(&root).with_context(|| format!("open {root}"))?;
    // Kept open for the process's life, so the path outlives the process it was found through.
    Ok(format!("/proc/self/fd/{}", dir.into_raw_fd()).into())
}

fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// How often the watcher looks for a namespace that is new, or has its first process.
const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// Namespaces some process is in: one `stat` per process, cheap enough to do every period.
/// What a scan depends on: the namespaces with processes, and apart from them those `ip netns
/// add` named (which may have none, as a test lab's or a CNI's before its first process), so a
/// process joining a named namespace (a container started in it) changes it too.
fn scanned_inodes() -> (HashSet<u32>, HashSet<u32>) {
    let named = netns::named().unwrap_or_default().into_iter().map(|ns| ns.inode).collect();
    let with_processes =
        pids().filter_map(|pid| std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()).map(|m| m.ino() as u32).collect();
    (with_processes, named)
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The latest scan, kept by a thread that rescans whenever the set of namespaces with processes
/// or names changes (a container started, a process joined a namespace that had none, `ip netns
/// add`), so lookups
/// never scan and nothing waits for a scan but [`Workloads::settle`].
#[derive(Default)]
pub struct Workloads {
    table: Arc<Mutex<Table>>,
    stop: Arc<AtomicBool>,
}

impl Workloads {
    /// Scans now, so what already runs is named from the first report, then watches.
    pub fn watch() -> Workloads {
        let roots = Roots::default();
        let mut last = scanned_inodes();
        let workloads = Workloads { table: Arc::new(Mutex::new(Table::scan(&roots, HashMap::new()))), stop: Arc::default() };
        let (shared, stop) = (workloads.table.clone(), workloads.stop.clone());
        let watcher = std::thread::Builder::new().name("netdiag-workloads".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(WATCH_PERIOD);
                let now = scanned_inodes();
                if now != last {
                    last = now;
                    let metadata = lock(&shared).metadata.clone();
                    let fresh = Table::scan(&roots, metadata);
                    *lock(&shared) = fresh;
                }
            }
        });
        if let Err(e) = watcher {
            log::warn!("cannot watch for new containers ({e}); workloads are named as they were at the start");
        }
        workloads
    }

    /// The table as it stands.
    pub fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    /// At the end of a session: a fresh scan, keeping what the last one knew of namespaces that
    /// have gone since (a container that exited during the session is still named).
    pub fn settle(&self) -> MutexGuard<'_, Table> {
        let mut table = lock(&self.table);
        let mut fresh = Table::scan(&Roots::default(), std::mem::take(&mut table.metadata));
        for (inode, entry) in table.by_netns.drain() {
            fresh.by_netns.entry(inode).or_insert(entry);
        }
        *table = fresh;
        table
    }
}

impl Drop for Workloads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `--container NAME|ID` or `--pod NAMESPACE/NAME`: a workload whose namespace a session covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Container(String),
    Pod(String),
}

impl Selector {
    /// The namespace inode, looked up once when the session starts.
    pub fn netns(&self) -> anyhow::Result<u32> {
        match self {
            Selector::Container(text) => container_netns(text),
            Selector::Pod(text) => pod_netns(text),
        }
    }
}

/// The namespace inode of the only container `--container TEXT` names (name, id or id prefix).
pub fn container_netns(text: &str) -> anyhow::Result<u32> {
    let table = Table::scan(&Roots::default(), HashMap::new());
    only_one(table.namespaces_of(|w| w.is_container(text)), || format!("no running container named `{text}` or with that id"))
}

/// The namespace inode of pod `NAMESPACE/NAME`.
pub fn pod_netns(text: &str) -> anyhow::Result<u32> {
    let Some((namespace, name)) = text.split_once('/') else {
        return Err(crate::error::usage(format!("--pod wants NAMESPACE/NAME, not `{text}`")));
    };
    let table = Table::scan(&Roots::default(), HashMap::new());
    only_one(table.namespaces_of(|w| w.is_pod(namespace, name)), || format!("no running pod {namespace}/{name} on this host"))
}

fn only_one(found: Vec<u32>, missing: impl FnOnce() -> String) -> anyhow::Result<u32> {
    match found.as_slice() {
        [inode] => Ok(*inode),
        [] => Err(crate::error::usage(missing())),
        _ => Err(crate::error::usage(format!("{} namespaces match; give a longer id", found.len()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "240d9ab4321e16881610bca5833a2eac13535d22ae41f368a6b2bd469bfc49b0";

    fn container() -> Workload {
        Workload { kind: "container", runtime: Some("podman".into()), id: Some(ID.into()), name: Some("web".into()), ..Workload::default() }
    }

    #[test]
    fn describes_by_name_with_a_short_id() {
        assert_eq!(container().describe(), "container web (podman 240d9ab4321e)");
        let in_pod = Workload { pod: Some("web-0".into()), namespace: Some("shop".into()), ..container() };
        assert_eq!(in_pod.describe(), "container web (podman 240d9ab4321e, pod shop/web-0)");
        let pod = Workload { kind: "pod", pod: Some("web-0".into()), namespace: Some("shop".into()), ..Workload::default() };
        assert_eq!(pod.describe(), "pod shop/web-0");
        assert_eq!(netns_workload(Some("srv".into())).describe(), "netns srv");
        assert_eq!(Workload::host().describe(), "host");
        assert_eq!(container().label(), "container/web");
        assert_eq!(pod.label(), "pod/shop/web-0");
        assert_eq!(netns_workload(None).label(), "netns");
    }

    #[test]
    fn a_container_is_named_by_name_or_a_long_enough_id() {
        assert!(container().is_container("web"));
        assert!(container().is_container(ID));
        assert!(container().is_container(&ID[..12]));
        assert!(!container().is_container(&ID[..4]), "too short to be unambiguous");
        assert!(!container().is_container("db"));
        assert!(!netns_workload(Some("web".into())).is_container("web"));
    }

    #[test]
    fn several_containers_with_a_pod_make_a_pod() {
        let pod_uid = Some("0d2a4b8e-5a43-4bb0-9d6b-2f6f6c5b7a11".to_string());
        let other = "a".repeat(64);
        let ns = Seen {
            containers: HashMap::from([(ID.to_string(), (Some("cri-o"), pod_uid.clone(), 10)), (other.clone(), (Some("cri-o"), pod_uid.clone(), 20))]),
            ..Seen::default()
        };
        let meta = ContainerMeta { name: Some("api".into()), pod: Some("api-0".into()), namespace: Some("shop".into()) };
        let metadata = HashMap::from([(ID.to_string(), meta.clone()), (other, meta)]);
        let w = workload_of(&ns, &metadata, None);
        assert_eq!((w.kind, w.id, w.pod.as_deref(), w.namespace.as_deref()), ("pod", pod_uid, Some("api-0"), Some("shop")));
    }

    #[test]
    fn a_pods_containers_select_its_namespace_and_a_peer_is_named_by_its_only_container_holder() {
        let pod = Workload { kind: "pod", pod: Some("web-0".into()), namespace: Some("shop".into()), ..Workload::default() };
        let addr: IpAddr = "198.51.100.2".parse().unwrap();
        let entry = |workload: Workload, containers: Vec<Workload>| Entry { workload, containers, addresses: vec![addr] };
        let table = Table {
            by_netns: HashMap::from([
                (1, entry(pod.clone(), vec![container()])),
                (2, entry(netns_workload(Some("lab".into())), Vec::new())),
                (3, entry(Workload::host(), Vec::new())),
            ]),
            by_cgroup: HashMap::from([(77, container())]),
            metadata: HashMap::new(),
        };
        assert_eq!(table.of_cgroup(77), Some(&container()), "a socket made in the container's cgroup");
        assert_eq!(table.of_cgroup(78), None);
        assert_eq!(table.namespaces_of(|w| w.is_container("web")), [1]);
        assert_eq!(table.namespaces_of(|w| w.is_pod("shop", "web-0")), [1]);
        // Three namespaces hold the address; one of them is a pod.
        assert_eq!(table.holding(addr, 3), Some(&pod));
        assert_eq!(table.holding(addr, 1), None, "two plain namespaces: ambiguous");
        assert_eq!(table.holding("203.0.113.9".parse().unwrap(), 3), None);
    }

    #[test]
    fn a_namespace_without_containers_is_named_by_ip_netns_or_its_unit() {
        let ns = Seen { units: BTreeSet::from(["nginx.service".to_string()]), ..Seen::default() };
        assert_eq!(workload_of(&ns, &HashMap::new(), None), netns_workload(Some("nginx.service".into())));
        assert_eq!(workload_of(&ns, &HashMap::new(), Some("srv".into())), netns_workload(Some("srv".into())));
    }
}
