//! Counter deltas per namespace over a diagnosis.
use std::{collections::HashMap, fs::File, os::fd::AsRawFd};

use anyhow::Result;

use super::{Counters, delta, read_if_alive};
use crate::netns::{self, Netns};

/// Counters of every namespace at start, to subtract at the end, and the latest reading of
/// each namespace of interest, so one that vanishes before the end keeps its name and counters.
pub struct CounterWatch {
    baselines: HashMap<u32, Counters>,
    /// Namespaces events came from, held open so their counters stay readable to the end even
    /// if they are deleted meanwhile (they are freed when the session ends).
    held: HashMap<u32, File>,
    latest: HashMap<u32, (Netns, Counters)>,
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
        Ok(CounterWatch { baselines, held: HashMap::new(), latest: HashMap::new() })
    }

    /// Whether `inode` has been read since start.
    pub fn has_reading(&self, inode: u32) -> bool {
        self.latest.contains_key(&inode)
    }

    /// Reads the named namespaces and `extra_inodes` now and keeps the readings. Namespaces
    /// that are gone keep their last reading.
    pub fn refresh(&mut self, extra_inodes: &[u32]) -> Result<()> {
        let named = netns::named()?;
        let mut inodes: Vec<u32> = named.iter().map(|ns| ns.inode).collect();
        for &inode in extra_inodes.iter().chain(self.latest.keys()) {
            if !inodes.contains(&inode) {
                inodes.push(inode);
            }
        }
        for inode in inodes {
            let found = netns::find(inode, &named);
            if let Some(ns) = &found
                && extra_inodes.contains(&inode)
                && !self.held.contains_key(&inode)
                && let Ok(file) = File::open(&ns.path)
            {
                self.held.insert(inode, file);
            }
            // A namespace deleted since (`ip netns del`) lives on while we hold it: read it
            // through our fd, under the name it had.
            let (ns, reach) = match (found, self.held.get(&inode), self.latest.get(&inode)) {
                (Some(ns), _, _) => (ns.clone(), ns),
                (None, Some(file), Some((known, _))) => {
                    let through_fd = Netns { path: format!("/proc/self/fd/{}", file.as_raw_fd()).into(), ..known.clone() };
                    (known.clone(), through_fd)
                }
                _ => continue,
            };
            if let Some(now) = read_if_alive(&reach)? {
                self.latest.insert(inode, (ns, now));
            }
        }
        Ok(())
    }

    /// Lets go of every namespace but `keep`: an agent runs for ever, so a namespace whose
    /// events have left the kernel maps must not stay held open (and read) after it is deleted.
    pub fn release_except(&mut self, keep: &[u32]) {
        self.held.retain(|inode, _| keep.contains(inode));
        self.latest.retain(|inode, _| keep.contains(inode));
    }

    /// Deltas since `start` of every namespace read during the session (named ones, those in
    /// `extra_inodes`, and those refreshed earlier), leaving out those where nothing rose. A
    /// namespace without a baseline was created since, and so counted from zero.
    pub fn deltas(&mut self, extra_inodes: &[u32]) -> Result<Vec<(Netns, Counters)>> {
        self.refresh(extra_inodes)?;
        let no_baseline = Counters::new();
        let mut deltas: Vec<(Netns, Counters)> = self
            .latest
            .iter()
            .map(|(inode, (ns, now))| (ns.clone(), delta(self.baselines.get(inode).unwrap_or(&no_baseline), now)))
            .filter(|(_, rise)| !rise.is_empty())
            .collect();
        deltas.sort_by_key(|(ns, _)| ns.inode);
        Ok(deltas)
    }
}

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
