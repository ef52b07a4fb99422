//! Network namespaces: naming them as `ip netns` does, and running code inside one.
use std::{
    collections::HashMap,
    fs::File,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

/// Where `ip netns add NAME` bind-mounts a namespace.
pub const NAMED_NETNS_DIR: &str = "/run/netns";

/// Inode of a namespace file (`/proc/self/ns/net`, `/run/netns/NAME`, `/proc/PID/ns/net`).
pub fn inode_of(path: &Path) -> Result<u32> {
    let meta = std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    Ok(meta.ino() as u32)
}

/// The namespace this process was started in.
pub fn root_inode() -> Result<u32> {
    inode_of(Path::new("/proc/1/ns/net")).or_else(|_| inode_of(Path::new("/proc/self/ns/net")))
}

/// A namespace netdiag can name and enter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns {
    pub inode: u32,
    /// `root`, the `ip netns` name, or `inode:N`.
    pub name: String,
    /// A file that refers to it, for `setns`.
    pub path: PathBuf,
}

/// Every namespace that has a name: the root one and those in `/run/netns`.
pub fn named() -> Result<Vec<Netns>> {
    let root = Netns { inode: root_inode()?, name: "root".into(), path: "/proc/1/ns/net".into() };
    let mut all = vec![root];
    if let Ok(dir) = std::fs::read_dir(NAMED_NETNS_DIR) {
        let mut names: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        names.sort();
        let nsfs = std::fs::metadata("/proc/self/ns/net").context("stat /proc/self/ns/net")?.dev();
        for path in names {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            // Only a bind mount of a namespace: the plain file under it (before `ip netns add`
            // mounts it, after `ip netns del` unmounts it, or in a mount namespace the mount did
            // not propagate to, as in a container) has an inode of /run's own.
            if !is_namespace(&meta, nsfs) {
                continue;
            }
            let inode = meta.ino() as u32;
            if all.iter().any(|n| n.inode == inode) {
                continue;
            }
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            all.push(Netns { inode, name, path });
        }
    }
    Ok(all)
}

/// Whether `meta` is of a namespace file, which the kernel's nsfs holds (device `nsfs`).
fn is_namespace(meta: &std::fs::Metadata, nsfs: u64) -> bool {
    meta.dev() == nsfs
}

/// Finds a namespace by inode: a named one, else through any process that lives in it.
pub fn find(inode: u32, known: &[Netns]) -> Option<Netns> {
    if let Some(ns) = known.iter().find(|n| n.inode == inode) {
        return Some(ns.clone());
    }
    let procs = std::fs::read_dir("/proc").ok()?;
    for entry in procs.flatten() {
        let pid = entry.file_name();
        if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path = entry.path().join("ns/net");
        if inode_of(&path).ok() == Some(inode) {
            return Some(Netns { inode, name: format!("inode:{inode}"), path });
        }
    }
    None
}

/// Display name of a namespace inode, as the JSON contract spells it.
pub fn display_name(inode: u32, known: &[Netns]) -> String {
    known
        .iter()
        .find(|n| n.inode == inode)
        .map(|n| n.name.clone())
        .unwrap_or_else(|| format!("inode:{inode}"))
}

/// Runs `f` on a fresh thread that has joined the namespace at `path`; the caller's thread
/// (and so the tokio runtime) never changes namespace.
pub fn run_in<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let shown = path.display().to_string();
    let inner = shown.clone();
    std::thread::spawn(move || {
        // SAFETY: setns on an open namespace fd affects only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns({inner}): {}", std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread in {shown} panicked"))?
}

/// Names of all known namespaces keyed by inode.
pub fn names_by_inode(known: &[Netns]) -> HashMap<u32, String> {
    known.iter().map(|n| (n.inode, n.name.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_file_is_told_from_the_plain_file_it_is_mounted_on() {
        let nsfs = std::fs::metadata("/proc/self/ns/net").unwrap().dev();
        assert!(is_namespace(&std::fs::metadata("/proc/self/ns/net").unwrap(), nsfs));
        let plain = std::env::temp_dir().join(format!("netdiag-not-a-netns-{}", std::process::id()));
        std::fs::write(&plain, "").unwrap();
        let meta = std::fs::metadata(&plain).unwrap();
        std::fs::remove_file(&plain).unwrap();
        assert!(!is_namespace(&meta, nsfs));
    }
}
