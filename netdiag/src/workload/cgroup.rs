//! What a process's cgroup path says about the workload it belongs to: the container runtime
//! and container id, the Kubernetes pod uid, or the systemd unit.

/// A process's place in the cgroup tree, as far as its path tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupOwner {
    Container {
        /// `docker`, `containerd`, `cri-o`, `podman`; `None` for a kubelet cgroupfs path, which
        /// does not name the runtime.
        runtime: Option<&'static str>,
        id: String,
        /// Kubernetes pod uid, when the path runs through a `kubepods` slice.
        pod_uid: Option<String>,
    },
    /// A systemd service or scope outside any container (`nginx.service`).
    Unit(String),
}

/// Scope prefixes of containers under systemd, and the runtime each stands for. The conmon
/// scopes (`libpod-conmon-<id>.scope`, `crio-conmon-<id>.scope`) hold the monitor, not the
/// container, and fail the id check.
const SCOPES: [(&str, &str); 4] =
    [("docker-", "docker"), ("cri-containerd-", "containerd"), ("crio-", "cri-o"), ("libpod-", "podman")];

/// The owner named by the first line of `/proc/PID/cgroup` that names one: the unified
/// hierarchy (`0::`) first, then the v1 hierarchies in the file's order.
pub fn owner_of(proc_cgroup: &str) -> Option<CgroupOwner> {
    let paths: Vec<&str> = proc_cgroup.lines().filter_map(|line| line.splitn(3, ':').nth(2)).collect();
    let unified = proc_cgroup.lines().filter(|l| l.starts_with("0::")).filter_map(|l| l.get(3..));
    unified.chain(paths.iter().copied()).find_map(owner_of_path)
}

/// The owner of one cgroup path, e.g.
/// `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`.
pub fn owner_of_path(path: &str) -> Option<CgroupOwner> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let pod_uid = parts.iter().find_map(|p| pod_uid_of(p));
    for (i, part) in parts.iter().enumerate().rev() {
        if let Some(scope) = part.strip_suffix(".scope") {
            for (prefix, runtime) in SCOPES {
                if let Some(id) = scope.strip_prefix(prefix).filter(|id| is_container_id(id)) {
                    return Some(CgroupOwner::Container { runtime: Some(runtime), id: id.to_string(), pod_uid });
                }
            }
        }
        if is_container_id(part) {
            // cgroupfs drivers: `/docker/<id>`, `/libpod_parent/libpod-<id>`, `/kubepods/besteffort/pod<uid>/<id>`.
            let runtime = match i.checked_sub(1).map(|p| parts[p]) {
                Some("docker") => Some("docker"),
                _ if pod_uid.is_some() => None,
                _ => continue,
            };
            return Some(CgroupOwner::Container { runtime, id: part.to_string(), pod_uid });
        }
        if let Some(id) = part.strip_prefix("libpod-").filter(|id| is_container_id(id)) {
            return Some(CgroupOwner::Container { runtime: Some("podman"), id: id.to_string(), pod_uid });
        }
    }
    let unit = parts.last().filter(|p| p.ends_with(".service") || p.ends_with(".scope"))?;
    Some(CgroupOwner::Unit(unit.to_string()))
}

/// The process's cgroup in the unified hierarchy (the `0::` line), the one the kernel files
/// its sockets under.
pub fn unified_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|line| line.strip_prefix("0::"))
}

/// Where the unified hierarchy (cgroup2) is mounted, from `/proc/self/mountinfo`:
/// `/sys/fs/cgroup` on a cgroup v2 host, `/sys/fs/cgroup/unified` on a hybrid one.
pub fn unified_mount(mountinfo: &str) -> Option<&str> {
    mountinfo.lines().find_map(|line| {
        let (fields, after) = line.split_once(" - ")?;
        (after.split(' ').next() == Some("cgroup2")).then(|| fields.split(' ').nth(4)).flatten()
    })
}

/// A pod uid from `pod<uid>` (cgroupfs) or `kubepods-<class>-pod<uid with _>.slice` (systemd).
fn pod_uid_of(part: &str) -> Option<String> {
    let name = part.strip_suffix(".slice").unwrap_or(part);
    let uid = name.rsplit_once("-pod").map(|(_, uid)| uid).or_else(|| name.strip_prefix("pod"))?;
    let uid = uid.replace('_', "-");
    (uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(uid)
}

/// Runtimes name containers by 64 lowercase hex digits.
fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "240d9ab4321e16881610bca5833a2eac13535d22ae41f368a6b2bd469bfc49b0";
    const UID: &str = "0d2a4b8e-5a43-4bb0-9d6b-2f6f6c5b7a11";

    fn container(runtime: Option<&'static str>, pod_uid: Option<&str>) -> Option<CgroupOwner> {
        Some(CgroupOwner::Container { runtime, id: ID.into(), pod_uid: pod_uid.map(String::from) })
    }

    #[test]
    fn reads_each_runtime_under_systemd() {
        assert_eq!(owner_of_path(&format!("/system.slice/docker-{ID}.scope")), container(Some("docker"), None));
        assert_eq!(owner_of_path(&format!("/machine.slice/libpod-{ID}.scope/container")), container(Some("podman"), None));
        assert_eq!(owner_of_path(&format!("/machine.slice/crio-{ID}.scope")), container(Some("cri-o"), None));
        let kube = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        assert_eq!(owner_of_path(&kube), container(Some("containerd"), Some(UID)));
    }

    #[test]
    fn reads_cgroupfs_paths() {
        assert_eq!(owner_of_path(&format!("/libpod_parent/libpod-{ID}")), container(Some("podman"), None));
        assert_eq!(owner_of_path(&format!("/docker/{ID}")), container(Some("docker"), None));
        assert_eq!(owner_of_path(&format!("/kubepods/besteffort/pod{UID}/{ID}")), container(None, Some(UID)));
    }

    #[test]
    fn the_monitor_and_plain_units_are_not_containers() {
        assert_eq!(owner_of_path(&format!("/machine.slice/libpod-conmon-{ID}.scope")), Some(CgroupOwner::Unit(format!("libpod-conmon-{ID}.scope"))));
        assert_eq!(owner_of_path("/system.slice/nginx.service"), Some(CgroupOwner::Unit("nginx.service".into())));
        assert_eq!(owner_of_path("/user.slice/user-1000.slice"), None);
        assert_eq!(owner_of_path("/"), None);
        // A bare id with no runtime or pod around it could be anything.
        assert_eq!(owner_of_path(&format!("/custom/{ID}")), None);
    }

    #[test]
    fn finds_the_unified_hierarchy_and_a_process_place_in_it() {
        let hybrid = "35 25 0:30 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory\n\
                      40 25 0:35 / /sys/fs/cgroup/unified rw,relatime shared:19 - cgroup2 cgroup2 rw\n";
        assert_eq!(unified_mount(hybrid), Some("/sys/fs/cgroup/unified"));
        assert_eq!(unified_mount("29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"), Some("/sys/fs/cgroup"));
        assert_eq!(unified_mount("35 25 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"), None);
        let proc_cgroup = format!("4:memory:/x\n0::/libpod_parent/libpod-{ID}\n");
        assert_eq!(unified_path(&proc_cgroup), Some(format!("/libpod_parent/libpod-{ID}").as_str()));
        assert_eq!(unified_path("4:memory:/x\n"), None);
    }

    #[test]
    fn prefers_the_unified_line_then_any_v1_line() {
        let hybrid = format!("9:name=systemd:/libpod_parent/libpod-{ID}\n8:pids:/libpod_parent/libpod-{ID}\n0::/\n");
        assert_eq!(owner_of(&hybrid), container(Some("podman"), None));
        let v2 = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(owner_of(&v2), container(Some("docker"), None));
        assert_eq!(owner_of("0::/init.scope\n"), Some(CgroupOwner::Unit("init.scope".into())));
        assert_eq!(owner_of("0::/\n"), None);
    }
}
