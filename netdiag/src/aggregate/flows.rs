//! Polls the kernel's per-flow counts (`FLOW_STATS`) during a session and feeds the ACK-loop
//! detector, so episodes get real start and end times; says on stderr when one starts or ends.
use std::{
    collections::{BTreeSet, HashMap},
    time::SystemTime,
};

use anyhow::Result;
use netdiag_common::{FlowKey, FlowStats};

use crate::{
    events::ip_from,
    hooks::{HookStatus, Probes},
    netns,
    verdict::{
        Finding,
        ack_loop::{self, Change, Detector, Episode, FlowId, NamespaceFacts, Rules, Sources, Totals},
    },
};

/// Printed on stderr when an episode starts or ends; scripts and tests can wait for it.
pub const LIVE_PREFIX: &str = "netdiag: finding";

pub struct FlowMonitor {
    detector: Detector,
    sources: Sources,
    /// Settings of each namespace an episode happened in, read when it started (the namespace
    /// may be gone by the end).
    facts: HashMap<u32, NamespaceFacts>,
    /// Whether episodes starting and ending are said on stderr.
    announce: bool,
}

impl FlowMonitor {
    /// Judges the flows with what `hooks` say serves them: where the `oow_limiter` hook is
    /// active, the kernel counts suppressed answers itself.
    pub fn new(hooks: &[HookStatus]) -> FlowMonitor {
        let serving = |name: &str| {
            hooks.iter().find(|h| h.name == name && h.active).map_or(("none", ""), |h| (h.backend.as_str(), h.target.as_str()))
        };
        let limiter_traced = serving("oow_limiter").0 != "none";
        let rules = Rules { limiter_traced, ..Rules::default() };
        FlowMonitor {
            detector: Detector::new(rules, epoch_now()),
            sources: Sources::new(serving("oow_received"), serving("flow_dupacks")),
            facts: HashMap::new(),
            announce: true,
        }
    }

    /// Judges as [`FlowMonitor::new`] does, but says nothing on stderr: for `top`, whose screen
    /// a line there would break.
    pub fn silent(hooks: &[HookStatus]) -> FlowMonitor {
        FlowMonitor { announce: false, ..FlowMonitor::new(hooks) }
    }

    /// Reads the kernel's counts now and judges the interval since the last poll.
    pub fn poll(&mut self, probes: &Probes) -> Result<()> {
        let flows: Vec<(FlowId, Totals)> = probes.flow_counts()?.iter().filter_map(flow_of).collect();
        let changes = self.detector.observe(epoch_now(), &flows);
        for change in changes {
            let (episode, what) = match &change {
                Change::Started(e) => (e, "started"),
                Change::Ended(e) => (e, "ended"),
            };
            self.facts.entry(episode.flow.netns).or_insert_with(|| namespace_facts(episode.flow.netns));
            if self.announce {
                eprintln!("{LIVE_PREFIX} {} {what}: {}", episode.kind.name(), one_line(episode));
            }
        }
        Ok(())
    }

    /// Namespaces with an episode, whose counters the report should carry.
    pub fn namespaces(&self) -> Vec<u32> {
        let inodes: BTreeSet<u32> = self.detector.episodes().iter().map(|e| e.flow.netns).collect();
        inodes.into_iter().collect()
    }

    /// One finding per episode that `keep` accepts, namespaces named by `name_of`.
    pub fn findings(&self, keep: impl Fn(&FlowId) -> bool, name_of: impl Fn(u32) -> String) -> Vec<Finding> {
        self.detector
            .episodes()
            .iter()
            .filter(|e| keep(&e.flow))
            .map(|e| {
                let facts = self.facts.get(&e.flow.netns).cloned().unwrap_or_default();
                let other_end = e.other_end_netns.map(&name_of);
                ack_loop::finding(e, &name_of(e.flow.netns), other_end.as_deref(), &facts, &self.sources)
            })
            .collect()
    }
}

fn flow_of((key, stats): &(FlowKey, FlowStats)) -> Option<(FlowId, Totals)> {
    let local = ip_from(key.family, &key.local)?;
    let remote = ip_from(key.family, &key.remote)?;
    let flow = FlowId {
        netns: key.netns,
        local: (local, key.local_port).into(),
        remote: (remote, key.remote_port).into(),
    };
    let totals = Totals {
        oow_timestamp: stats.oow_timestamp,
        oow_sequence: stats.oow_sequence,
        oow_ack: stats.oow_ack,
        oow_pure_ack: stats.oow_pure_ack,
        dupacks_out: stats.dupacks_out,
        progress_out: stats.progress_out,
        limiter_suppressed: stats.limiter_suppressed,
        srtt_us: stats.srtt_us,
    };
    Some((flow, totals))
}

fn one_line(e: &Episode) -> String {
    let known = netns::named().unwrap_or_default();
    let ns = netns::display_name(e.flow.netns, &known);
    format!(
        "{} <-> {} (netns {ns}), {:.0} out-of-window segments/s in, {:.0} duplicate ACKs/s out, {:.0}/s suppressed",
        e.flow.remote,
        e.flow.local,
        e.rate(e.totals.oow()),
        e.rate(e.totals.dupacks_out),
        e.rate(e.suppressed())
    )
}

/// tcp_invalid_ratelimit and tcp_timestamps are per namespace: read them inside it.
fn namespace_facts(inode: u32) -> NamespaceFacts {
    let known = netns::named().unwrap_or_default();
    let Some(ns) = netns::find(inode, &known) else { return NamespaceFacts::default() };
    netns::run_in(&ns.path, || {
        let read = |key: &str| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{key}")).ok();
        Ok(NamespaceFacts {
            tcp_invalid_ratelimit_ms: read("tcp_invalid_ratelimit").and_then(|v| v.trim().parse().ok()),
            tcp_timestamps: read("tcp_timestamps").and_then(|v| v.trim().parse().ok()),
        })
    })
    .unwrap_or_default()
}

fn epoch_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
