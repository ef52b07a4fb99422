//! The kernel's own network counters (`/proc/net/netstat`, `snmp`, `snmp6`), named as `nstat`
//! names them (`TcpExtPAWSEstab`, `TcpActiveOpens`, `Ip6InReceives`), read per namespace.
use std::{collections::BTreeMap, io::ErrorKind, os::unix::fs::MetadataExt, path::Path};

use anyhow::{Context as _, Result, anyhow};

use crate::netns::{self, Netns};

mod watch;
pub use watch::CounterWatch;

/// Counter name → value.
pub type Counters = BTreeMap<String, u64>;

/// The calling thread's view of the counters. `/proc/self/net` follows the namespace of the
/// process's main thread, so a thread that joined another namespace must use `thread-self`.
const COUNTER_FILES: [&str; 3] =
    ["/proc/thread-self/net/netstat", "/proc/thread-self/net/snmp", "/proc/thread-self/net/snmp6"];

/// The namespace of the calling thread.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// Gauges rather than counters; nstat leaves them out, and a delta of them means nothing.
const GAUGES: [&str; 7] = [
    "IpForwarding",
    "IpDefaultTTL",
    "TcpRtoAlgorithm",
    "TcpRtoMin",
    "TcpRtoMax",
    "TcpMaxConn",
    "TcpCurrEstab",
];

/// Parses any of the three formats: `netstat` and `snmp` hold pairs of lines
/// (`TcpExt: PAWSEstab ...` then `TcpExt: 3 ...`), `snmp6` holds `Ip6InReceives 12` lines.
/// Values that are not unsigned integers (`TcpMaxConn` is -1) are left out.
pub fn parse(text: &str) -> Counters {
    let mut counters = Counters::new();
    let mut pending_names: Option<(&str, Vec<&str>)> = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let Some(prefix) = first.strip_suffix(':') else {
            if let (Some(value), None) = (words.next(), words.next()) {
                insert(&mut counters, first.to_string(), value);
            }
            continue;
        };
        match pending_names.take() {
            Some((names_prefix, names)) if names_prefix == prefix => {
                for (name, value) in names.into_iter().zip(words) {
                    insert(&mut counters, format!("{prefix}{name}"), value);
                }
            }
            _ => pending_names = Some((prefix, words.collect())),
        }
    }
    counters
}

fn insert(counters: &mut Counters, name: String, value: &str) {
    if GAUGES.contains(&name.as_str()) {
        return;
    }
    if let Ok(value) = value.parse() {
        counters.insert(name, value);
    }
}

/// Counters of the namespace the calling thread is in.
pub fn read_current_thread() -> Result<Counters> {
    let mut counters = Counters::new();
    for path in COUNTER_FILES {
        match std::fs::read_to_string(path) {
            Ok(text) => counters.extend(parse(&text)),
            // snmp6 is absent when IPv6 is disabled.
            Err(err) if err.kind() == ErrorKind::NotFound && path.ends_with("snmp6") => {}
            Err(err) => return Err(err).with_context(|| format!("read {path}")),
        }
    }
    Ok(counters)
}

/// Counters of namespace `ns`: read directly if the calling thread is in it (so the root
/// namespace works even where `/proc/1/ns/net` cannot be opened), else from a thread that
/// joins it.
pub fn read_in(ns: &Netns) -> Result<Counters> {
    read_if_alive(ns)?
        .ok_or_else(|| anyhow!("namespace {} ({}) no longer exists", ns.name, ns.path.display()))
}

/// Like `read_in`, but None if `ns` is gone: its file vanished with its process, or the path
/// now leads to another namespace (a `/proc/PID` reused by a process elsewhere).
fn read_if_alive(ns: &Netns) -> Result<Option<Counters>> {
    let inode = ns.inode;
    let in_namespace =
        move || netns::inode_of(Path::new(THREAD_NETNS)).is_ok_and(|own| own == inode);
    if in_namespace() {
        return read_current_thread().map(Some);
    }
    let read = netns::run_in(&ns.path, move || {
        if !in_namespace() {
            return Ok(None);
        }
        read_current_thread().map(Some)
    });
    match (read, std::fs::metadata(&ns.path)) {
        (Ok(counters), _) => Ok(counters),
        (Err(_), Err(gone)) if gone.kind() == ErrorKind::NotFound => Ok(None),
        (Err(_), Ok(meta)) if meta.ino() as u32 != inode => Ok(None),
        (Err(err), _) => Err(err.context(format!("read counters of namespace {}", ns.name))),
    }
}

/// What rose from `before` to `after`: counters that did not rise are left out, and one that
/// went down (a namespace replaced by a new one with the same inode) counts as zero.
pub fn delta(before: &Counters, after: &Counters) -> Counters {
    after
        .iter()
        .filter_map(|(name, &now)| {
            let rise = now.saturating_sub(before.get(name).copied().unwrap_or(0));
            (rise > 0).then(|| (name.clone(), rise))
        })
        .collect()
}

#[cfg(test)]
mod tests;
