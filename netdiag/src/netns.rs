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
    named_in(Path::new(NAMED_NETNS_DIR))
}

fn named_in(dir: &Path) -> Result<Vec<Netns>> {
    let root = Netns { inode: root_inode()?, name: "root".into(), path: "/proc/1/ns/net".into() };
    // `ip netns add` creates the file before it bind-mounts the namespace on it, and `del`
    // unmounts before it removes it: only a file on nsfs (as /proc's namespace files are) is
    // one, or a namespace created meanwhile is listed with an inode no setns can enter.
    let nsfs = std::fs::metadata("/proc/self/ns/net").map(|m| m.dev()).ok();
    let mut all = vec![root];
    if let Ok(dir) = std::fs::read_dir(dir) {
        let mut names: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if nsfs.is_some_and(|dev| meta.dev() != dev) {
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
    fn a_file_not_yet_mounted_on_is_no_namespace() {
        let dir = std::env::temp_dir().join(format!("netdiag-netns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("being-added"), "").unwrap();
        let found = named_in(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["root"]);
    }
}
