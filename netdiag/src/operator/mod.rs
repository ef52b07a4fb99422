//! Commands for an operator that need no tracing and no eBPF: `counters` (nstat-style TCP
//! counter deltas, explained), `explain` (what a counter, drop reason or finding means and
//! what to do) and `check` (the settings and listeners behind the incidents). `knowledge` is
//! the one table of meanings they share.
//!
//! Each command has an `Args` struct for clap and a `run` that returns the exit status.
pub mod check;
pub mod counters;
pub mod explain;
pub mod knowledge;
pub mod listeners;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Result;

use crate::{
    error::unavailable,
    netns::{self, Netns},
};

/// The `--netns` value that selects the root namespace and every `ip netns` one.
pub const ALL_NAMESPACES: &str = "all";

/// The namespace of the calling thread.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// Width text output is wrapped to.
const TEXT_WIDTH: usize = 100;

/// The namespaces `--netns NAME|all` selects: `root`, an `ip netns` name, or `all`. None when
/// no namespace has that name; the user has then been told which names exist.
fn select_namespaces(selection: &str) -> Result<Option<Vec<Netns>>> {
    let known = netns::named()?;
    if selection == ALL_NAMESPACES {
        return Ok(Some(known));
    }
    if let Some(ns) = known.iter().find(|ns| ns.name == selection) {
        return Ok(Some(vec![ns.clone()]));
    }
    let names: Vec<&str> = known.iter().map(|ns| ns.name.as_str()).collect();
    eprintln!(
        "netdiag: no network namespace is called `{selection}`; known: {}, or `{ALL_NAMESPACES}`",
        names.join(", ")
    );
    Ok(None)
}

/// Runs `f` in namespace `ns`: on the calling thread if it is already there (so the root
/// namespace works without the right to open `/proc/1/ns/net`), else on a thread that joins it.
/// Per-namespace files must then be read through `/proc/thread-self/net` or `/proc/sys/net`,
/// both of which follow the reading thread's namespace. Failing to join is a missing privilege
/// (exit status 2), not a finding.
fn in_namespace<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    if netns::inode_of(Path::new(THREAD_NETNS)).is_ok_and(|inode| inode == ns.inode) {
        return f();
    }
    let entered = Arc::new(AtomicBool::new(false));
    let inside = entered.clone();
    netns::run_in(&ns.path, move || {
        inside.store(true, Ordering::Relaxed);
        f()
    })
    .map_err(|err| {
        if entered.load(Ordering::Relaxed) {
            return err;
        }
        unavailable(
            format!("cannot enter network namespace {} ({err:#})", ns.name),
            "joining another namespace needs root (CAP_SYS_ADMIN); without --netns netdiag reads the root namespace",
        )
    })
}

/// `text` wrapped to the output width, every line indented by `indent` spaces.
fn wrapped(text: &str, indent: usize) -> String {
    let margin = " ".repeat(indent);
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > TEXT_WIDTH {
            out.push_str(&format!("{margin}{line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("{margin}{line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_words_within_the_width_and_indents() {
        let text = "word ".repeat(40);
        let out = wrapped(&text, 4);
        assert!(out.lines().count() > 1);
        for line in out.lines() {
            assert!(line.starts_with("    word") && line.len() <= TEXT_WIDTH, "{line:?}");
        }
        assert_eq!(out.split_whitespace().count(), 40);
        assert_eq!(wrapped("", 2), "");
    }

    #[test]
    fn selects_root_all_or_nothing() {
        let root = select_namespaces("root").unwrap().unwrap();
        assert_eq!(root.len(), 1);
        assert_eq!(root[0].name, "root");
        let all = select_namespaces(ALL_NAMESPACES).unwrap().unwrap();
        assert_eq!(all[0], root[0]);
        assert!(select_namespaces("no-such-namespace-here").unwrap().is_none());
    }
}
