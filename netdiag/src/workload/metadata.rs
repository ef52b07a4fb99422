//! Container names and Kubernetes pods from what the runtimes keep on the host's disk: read as
//! files, never by asking the runtime (no socket, no process), so a lookup cannot hang on it.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use serde_json::Value;

/// What a runtime says about one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    pub name: Option<String>,
    /// Kubernetes pod name and namespace, from the container's labels or annotations.
    pub pod: Option<String>,
    pub namespace: Option<String>,
}

/// Where each runtime keeps its metadata; the defaults are the packages' own.
#[derive(Clone, Debug)]
pub struct Roots {
    /// podman and CRI-O (containers/storage): `overlay-containers/containers.json` and
    /// `overlay-containers/<id>/userdata/config.json`.
    pub containers_storage: Vec<PathBuf>,
    /// dockerd: `containers/<id>/config.v2.json`.
    pub docker: PathBuf,
    /// containerd's shim v2 bundles: `<namespace>/<id>/config.json`.
    pub containerd_tasks: PathBuf,
}

impl Default for Roots {
    fn default() -> Roots {
        Roots {
            containers_storage: vec!["/var/lib/containers/storage".into(), "/run/containers/storage".into()],
            docker: "/var/lib/docker".into(),
            containerd_tasks: "/run/containerd/io.containerd.runtime.v2.task".into(),
        }
    }
}

impl Roots {
    /// Everything readable about container `id` of `runtime` (every runtime when the cgroup did
    /// not say which). Missing or unreadable files give empty fields, not errors.
    pub fn read(&self, runtime: Option<&str>, id: &str) -> ContainerMeta {
        let mut meta = ContainerMeta::default();
        let tries = |name: &str| runtime.is_none_or(|r| r == name);
        if tries("podman") || tries("cri-o") {
            for dir in self.storage_dirs() {
                if meta.name.is_none() {
                    meta.name = read(&dir.join("containers.json")).and_then(|text| storage_names(&text).remove(id));
                }
                if let Some(text) = read(&dir.join(id).join("userdata/config.json")) {
                    merge(&mut meta, oci_annotations(&text));
                }
            }
        }
        if tries("docker")
            && let Some(text) = read(&self.docker_containers().join(id).join("config.v2.json"))
        {
            merge(&mut meta, docker_config(&text));
        }
        if tries("containerd")
            && let Ok(namespaces) = std::fs::read_dir(&self.containerd_tasks)
        {
            for ns in namespaces.flatten() {
                if let Some(text) = read(&ns.path().join(id).join("config.json")) {
                    merge(&mut meta, oci_annotations(&text));
                }
            }
        }
        meta
    }

    /// Every host directory [`Roots::read`] looks in: where the agent runs in a container
    /// (the DaemonSet), each must be mounted at the same path.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.storage_dirs().collect();
        dirs.extend([self.docker_containers(), self.containerd_tasks.clone()]);
        dirs
    }

    fn storage_dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.containers_storage.iter().map(|root| root.join("overlay-containers"))
    }

    fn docker_containers(&self) -> PathBuf {
        self.docker.join("containers")
    }
}

/// Fills what `meta` lacks from `more`; Kubernetes' container name beats a runtime's own
/// (CRI-O and containerd name theirs `k8s_<container>_<pod>_...` or by id).
fn merge(meta: &mut ContainerMeta, more: ContainerMeta) {
    meta.name = more.name.or(meta.name.take());
    meta.pod = meta.pod.take().or(more.pod);
    meta.namespace = meta.namespace.take().or(more.namespace);
}

/// Metadata files are small; a bigger one is not what it claims to be.
const MAX_METADATA_BYTES: u64 = 4 << 20;

fn read(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    if file.metadata().ok()?.len() > MAX_METADATA_BYTES {
        return None;
    }
    std::io::read_to_string(file).ok()
}

/// Container id → first name, from containers/storage's `containers.json`.
pub fn storage_names(containers_json: &str) -> HashMap<String, String> {
    let Ok(Value::Array(all)) = serde_json::from_str(containers_json) else { return HashMap::new() };
    all.iter()
        .filter_map(|c| Some((c["id"].as_str()?.to_string(), c["names"][0].as_str()?.to_string())))
        .collect()
}

/// Pod and container from an OCI bundle's annotations (CRI-O, containerd's CRI plugin, podman
/// play kube).
pub fn oci_annotations(config_json: &str) -> ContainerMeta {
    let Ok(config) = serde_json::from_str::<Value>(config_json) else { return ContainerMeta::default() };
    kubernetes(&config["annotations"])
}

/// Name and Kubernetes labels from dockerd's `config.v2.json` (name stored as `/web`).
pub fn docker_config(config_json: &str) -> ContainerMeta {
    let Ok(config) = serde_json::from_str::<Value>(config_json) else { return ContainerMeta::default() };
    let from_labels = kubernetes(&config["Config"]["Labels"]);
    let name = config["Name"].as_str().map(|n| n.trim_start_matches('/').to_string()).filter(|n| !n.is_empty());
    ContainerMeta { name: from_labels.name.or(name), ..from_labels }
}

/// The pod, namespace and container name under the keys kubelet's runtimes use.
fn kubernetes(keys: &Value) -> ContainerMeta {
    let first = |names: &[&str]| {
        names.iter().find_map(|k| keys[*k].as_str()).filter(|v| !v.is_empty()).map(String::from)
    };
    ContainerMeta {
        name: first(&["io.kubernetes.container.name", "io.kubernetes.cri.container-name"]),
        pod: first(&["io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"]),
        namespace: first(&["io.kubernetes.pod.namespace", "io.kubernetes.cri.sandbox-namespace"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "240d9ab4321e16881610bca5833a2eac13535d22ae41f368a6b2bd469bfc49b0";

    #[test]
    fn names_from_containers_storage() {
        let json = format!(
            r#"[{{"id": "{ID}", "names": ["web"], "metadata": "{{}}"}}, {{"id": "other", "names": []}}]"#
        );
        assert_eq!(storage_names(&json), HashMap::from([(ID.to_string(), "web".to_string())]));
        assert!(storage_names("not json").is_empty());
    }

    #[test]
    fn pods_from_cri_annotations() {
        let crio = r#"{"annotations": {"io.kubernetes.pod.name": "api-7d4b9", "io.kubernetes.pod.namespace": "shop",
            "io.kubernetes.container.name": "api"}}"#;
        let want = ContainerMeta { name: Some("api".into()), pod: Some("api-7d4b9".into()), namespace: Some("shop".into()) };
        assert_eq!(oci_annotations(crio), want);
        let containerd = r#"{"annotations": {"io.kubernetes.cri.sandbox-name": "api-7d4b9",
            "io.kubernetes.cri.sandbox-namespace": "shop", "io.kubernetes.cri.container-name": "api"}}"#;
        assert_eq!(oci_annotations(containerd), want);
        assert_eq!(oci_annotations(r#"{"annotations": {"io.container.manager": "libpod"}}"#), ContainerMeta::default());
    }

    #[test]
    fn docker_names_and_labels() {
        let plain = r#"{"Name": "/web", "Config": {"Labels": {}}}"#;
        assert_eq!(docker_config(plain), ContainerMeta { name: Some("web".into()), ..Default::default() });
        let kube = r#"{"Name": "/k8s_api_api-7d4b9_shop_uid_0", "Config": {"Labels": {"io.kubernetes.container.name": "api",
            "io.kubernetes.pod.name": "api-7d4b9", "io.kubernetes.pod.namespace": "shop"}}}"#;
        assert_eq!(docker_config(kube).name.as_deref(), Some("api"));
        assert_eq!(docker_config(kube).namespace.as_deref(), Some("shop"));
    }

    #[test]
    fn reads_the_files_of_a_runtime_and_skips_missing_ones() {
        let dir = std::env::temp_dir().join(format!("netdiag-meta-{}", std::process::id()));
        let storage = dir.join("storage/overlay-containers");
        std::fs::create_dir_all(storage.join(ID).join("userdata")).unwrap();
        std::fs::write(storage.join("containers.json"), format!(r#"[{{"id": "{ID}", "names": ["web"]}}]"#)).unwrap();
        std::fs::write(
            storage.join(ID).join("userdata/config.json"),
            r#"{"annotations": {"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "shop"}}"#,
        )
        .unwrap();
        let roots = Roots { containers_storage: vec![dir.join("storage")], docker: dir.join("docker"), containerd_tasks: dir.join("tasks") };
        let want = ContainerMeta { name: Some("web".into()), pod: Some("web-0".into()), namespace: Some("shop".into()) };
        assert_eq!(roots.read(Some("podman"), ID), want);
        assert_eq!(roots.read(None, ID), want);
        assert_eq!(roots.read(Some("docker"), ID), ContainerMeta::default());
        assert!(roots.dirs().contains(&storage), "the directory just read is listed: {:?}", roots.dirs());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
