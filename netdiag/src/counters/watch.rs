//! Counter deltas per namespace over a diagnosis.
use std::collections::HashMap;

use anyhow::Result;

use super::{Counters, delta, read_if_alive};
use crate::netns::{self, Netns};

/// Counters of every namespace at start, to subtract at the end.
pub struct CounterWatch {
    baselines: HashMap<u32, Counters>,
}

impl CounterWatch {
    /// Records a baseline for every namespace that exists now: the named ones and those of
    /// running processes.
    pub fn start() -> Result<CounterWatch> {
        let mut baselines = HashMap::new();
        for ns in every_namespace()? {
            if let Some(counters) = read_if_alive(&ns)? {
                baselines.insert(ns.inode, counters);
            }
        }
        Ok(CounterWatch { baselines })
    }

    /// Deltas since `start` of the named namespaces and of `extra_inodes`, leaving out
    /// namespaces that are gone and those where nothing rose. A namespace without a baseline
    /// was created since, and so counted from zero.
    pub fn deltas(&self, extra_inodes: &[u32]) -> Result<Vec<(Netns, Counters)>> {
        let named = netns::named()?;
        let mut inodes: Vec<u32> = named.iter().map(|ns| ns.inode).collect();
        for &inode in extra_inodes {
            if !inodes.contains(&inode) {
                inodes.push(inode);
            }
        }
        let no_baseline = Counters::new();
        let mut deltas = Vec::new();
        for inode in inodes {
            let Some(ns) = netns::find(inode, &named) else { continue };
            let Some(now) = read_if_alive(&ns)? else { continue };
            let rise = delta(self.baselines.get(&inode).unwrap_or(&no_baseline), &now);
            if !rise.is_empty() {
                deltas.push((ns, rise));
            }
        }
        Ok(deltas)
    }
}

/// The named namespaces plus one entry per other namespace a process is in.
fn every_namespace() -> Result<Vec<Netns>> {
    let mut all = netns::named()?;
    let Ok(procs) = std::fs::read_dir("/proc") else { return Ok(all) };
    for entry in procs.flatten() {
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path = entry.path().join("ns/net");
        // The process may have exited since the directory was listed.
        let Ok(inode) = netns::inode_of(&path) else { continue };
        if !all.iter().any(|ns| ns.inode == inode) {
            all.push(Netns { inode, name: format!("inode:{inode}"), path });
        }
    }
    Ok(all)
}
