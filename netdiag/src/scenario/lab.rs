//! A set of network namespaces a scenario owns: uniquely named, linked by veth pairs, and
//! deleted when the `Lab` is dropped (panics included).
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::netns;

/// Makes lab names unique within the process; the pid makes them unique across processes.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// The first `ip netns add` of a boot turns /run/netns into a shared mount; parallel tests
/// racing on that step can fail, so additions are serialized.
static NETNS_ADD: Mutex<()> = Mutex::new(());

/// Longest tag or role: keeps interface names (`v<N>-<role>`) within the kernel's 15 bytes.
const MAX_LABEL: usize = 10;

/// Namespaces created for one scenario run; `Drop` deletes them all.
pub struct Lab {
    prefix: String,
    namespaces: Vec<OwnedNs>,
    links: usize,
}

struct OwnedNs {
    role: String,
    name: String,
}

/// The two interface names of a veth pair, one in each namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethPair {
    pub a_if: String,
    pub b_if: String,
}

impl Lab {
    /// An empty lab; `tag` (ASCII letters and digits, at most 10) shows in the namespace names,
    /// `nd-<tag>-<pid>-<n>-<role>`.
    pub fn new(tag: &str) -> Result<Lab> {
        check_label("tag", tag)?;
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        Ok(Lab {
            prefix: format!("nd-{tag}-{}-{n}", std::process::id()),
            namespaces: Vec::new(),
            links: 0,
        })
    }

    /// Creates a namespace for `role` with loopback up; returns its full `ip netns` name.
    pub fn add_ns(&mut self, role: &str) -> Result<String> {
        check_label("role", role)?;
        ensure!(
            self.namespaces.iter().all(|ns| ns.role != role),
            "role {role} already exists in {}",
            self.prefix
        );
        let name = format!("{}-{role}", self.prefix);
        {
            let _serialized = NETNS_ADD.lock().unwrap_or_else(PoisonError::into_inner);
            ip(&["netns", "add", &name])?;
        }
        self.namespaces.push(OwnedNs { role: role.to_owned(), name: name.clone() });
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }

    /// Where `ip netns` keeps the namespace called `full_name`, for `netns::run_in`.
    pub fn ns_path(&self, full_name: &str) -> PathBuf {
        Path::new(netns::NAMED_NETNS_DIR).join(full_name)
    }

    /// Full names of the namespaces this lab owns, in creation order.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.iter().map(|ns| ns.name.as_str())
    }

    /// Links namespaces `a` and `b` with a veth pair, assigns the CIDR addresses (IPv6 ones
    /// without duplicate address detection, so they are usable at once) and brings both ends up.
    pub fn link(
        &mut self,
        a: &str,
        a_addrs: &[&str],
        b: &str,
        b_addrs: &[&str],
    ) -> Result<VethPair> {
        let (a_role, b_role) = (self.role_of(a)?, self.role_of(b)?);
        let pair = VethPair {
            a_if: format!("v{}-{b_role}", self.links),
            b_if: format!("v{}-{a_role}", self.links),
        };
        self.links += 1;
        // Run in `a` so the pair is born inside the lab and never appears in the root namespace.
        ip(&[
            "-n", a, "link", "add", &pair.a_if, "type", "veth", "peer", "name", &pair.b_if,
            "netns", b,
        ])?;
        bring_up(a, &pair.a_if, a_addrs)?;
        bring_up(b, &pair.b_if, b_addrs)?;
        Ok(pair)
    }

    /// Changes settings of one of the lab's interfaces: `ip link set dev IFNAME SETTINGS...`
    /// (`mtu 9000`, `address 02:...`).
    pub fn set_link(&self, ns: &str, ifname: &str, settings: &[&str]) -> Result<()> {
        self.role_of(ns)?;
        ip(&[&["-n", ns, "link", "set", "dev", ifname][..], settings].concat())
    }

    /// Adds a route in one of the lab's namespaces: `ip -n NS route add ARGS...`.
    pub fn route(&self, ns: &str, args: &[&str]) -> Result<()> {
        self.role_of(ns)?;
        let mut all = vec!["-n", ns, "route", "add"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Writes a per-namespace sysctl (`net.ipv4.*` or `net.ipv6.*`) in one of the lab's namespaces.
    pub fn sysctl(&self, ns: &str, key: &str, value: &str) -> Result<()> {
        let file = self.sysctl_file(ns, key)?;
        let value = value.to_owned();
        netns::run_in(&self.ns_path(ns), move || {
            std::fs::write(&file, value).with_context(|| format!("write {}", file.display()))
        })
    }

    /// Reads a per-namespace sysctl (`net.ipv4.*` or `net.ipv6.*`) in one of the lab's namespaces.
    pub fn read_sysctl(&self, ns: &str, key: &str) -> Result<String> {
        let file = self.sysctl_file(ns, key)?;
        netns::run_in(&self.ns_path(ns), move || {
            let value = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            Ok(value.trim().to_owned())
        })
    }

    /// Loads an nftables ruleset (`nft -f -` syntax) into one of the lab's namespaces.
    pub fn nft(&self, ns: &str, ruleset: &str) -> Result<()> {
        self.role_of(ns)?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("run nft")?;
        child.stdin.take().context("nft stdin")?.write_all(ruleset.as_bytes())?;
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "nft in {ns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    fn role_of(&self, ns: &str) -> Result<&str> {
        match self.namespaces.iter().find(|owned| owned.name == ns) {
            Some(owned) => Ok(&owned.role),
            None => bail!("namespace {ns} does not belong to lab {}", self.prefix),
        }
    }

    /// Only namespaces of this lab, and only the per-namespace `net.ipv4`/`net.ipv6` trees
    /// (the kernel hides their global keys outside the root namespace): the root's stay untouched.
    fn sysctl_file(&self, ns: &str, key: &str) -> Result<PathBuf> {
        self.role_of(ns)?;
        ensure!(
            (key.starts_with("net.ipv4.") || key.starts_with("net.ipv6."))
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'),
            "sysctl {key} is not a per-namespace net.ipv4/net.ipv6 key"
        );
        Ok(Path::new("/proc/sys").join(key.replace('.', "/")))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            if let Err(err) = ip(&["netns", "del", &ns.name]) {
                log::warn!("could not remove namespace {}: {err:#}", ns.name);
            }
        }
    }
}

fn check_label(what: &str, label: &str) -> Result<()> {
    ensure!(
        !label.is_empty()
            && label.len() <= MAX_LABEL
            && label.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{what} {label:?} must be 1 to {MAX_LABEL} ASCII letters or digits"
    );
    Ok(())
}

fn bring_up(ns: &str, ifname: &str, addrs: &[&str]) -> Result<()> {
    for addr in addrs {
        let mut args = vec!["-n", ns, "addr", "add", addr, "dev", ifname];
        if addr.contains(':') {
            args.push("nodad");
        }
        ip(&args)?;
    }
    ip(&["-n", ns, "link", "set", ifname, "up"])
}

pub(super) fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("run ip (iproute2)")?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
