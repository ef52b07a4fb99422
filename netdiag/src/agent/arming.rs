//! The agent's two layers. Always on: the drop path (its program runs only for dropped
//! packets), the slow-path function and socket hooks, and the kernel's counters. Armed on
//! demand: the per-packet programs on the receive and transmit paths (SYN arrivals, SYN-ACKs
//! and duplicate ACKs leaving, where the kernel offers no slow-path hook for them), attached
//! only while the cheap layer shows an incident of their kind and detached once it has been
//! quiet for `deep_quiet`. What the deep layer misses is the start of an incident, before the
//! cycle that arms it.
use std::{collections::BTreeMap, time::{Duration, Instant}};

use anyhow::Result;

use crate::{
    counters::Counters,
    hooks::{ArmRequests, DeepHook, Probes},
};

/// Counters whose rise in any namespace is a SYN incident: the receive program's SYN count and
/// timestamps and the transmit program's SYN-ACK count explain it.
const SYN_COUNTERS: &[&str] =
    &["TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPReqQFullDrop", "TcpExtPAWSTimewait", "TcpExtPAWSActive"];
/// Counters whose rise is an out-of-window incident: duplicate ACKs leaving tell an ACK loop.
const OOW_COUNTERS: &[&str] = &[
    "TcpExtPAWSEstab",
    "TcpExtTCPACKSkippedPAWS",
    "TcpExtTCPACKSkippedSeq",
    "TcpExtTCPACKSkippedTimeWait",
    "TcpExtTCPACKSkippedChallenge",
];

/// Why a deep hook is wanted now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Incidents {
    pub syn: bool,
    pub out_of_window: bool,
}

impl Incidents {
    fn wants(self, deep: DeepHook) -> bool {
        match deep {
            DeepHook::Receive => self.syn,
            DeepHook::Transmit => self.syn || self.out_of_window,
        }
    }

    fn why(self) -> &'static str {
        match (self.syn, self.out_of_window) {
            (true, true) => "SYN drops and out-of-window drops",
            (true, false) => "SYN drops",
            _ => "out-of-window drops",
        }
    }
}

/// One deep hook's state.
#[derive(Clone, Debug, PartialEq)]
pub struct DeepState {
    pub hook: DeepHook,
    pub armed: bool,
    /// When an incident last wanted it.
    last_wanted: Option<Instant>,
    pub arms: u64,
}

/// What a cycle changed, for the log.
#[derive(Debug, PartialEq)]
pub enum Change {
    Armed(DeepHook, &'static str),
    Disarmed(DeepHook, Duration),
}

pub struct Arming {
    pub states: Vec<DeepState>,
    quiet: Duration,
    requests: ArmRequests,
    counters: (u64, u64),
}

impl Arming {
    /// Detaches every deep hook `probes` has; they wait for an incident.
    pub fn start(probes: &mut Probes, quiet: Duration) -> Result<Arming> {
        let mut states = Vec::new();
        for hook in probes.deep_hooks() {
            probes.arm(hook, false)?;
            states.push(DeepState { hook, armed: false, last_wanted: None, arms: 0 });
        }
        Ok(Arming { states, quiet, requests: probes.arm_requests()?, counters: (0, 0) })
    }

    /// Reads the cheap layer (the drop program's requests, the counters' deltas since start in
    /// `counters`) and arms or disarms the deep hooks.
    pub fn step(&mut self, probes: &mut Probes, counters: &BTreeMap<String, Counters>, now: Instant) -> Result<Vec<Change>> {
        let requests = probes.arm_requests()?;
        let totals = (sum(counters, SYN_COUNTERS), sum(counters, OOW_COUNTERS));
        let incidents = Incidents {
            syn: requests.syn_drops > self.requests.syn_drops || totals.0 > self.counters.0,
            out_of_window: requests.oow_drops > self.requests.oow_drops || totals.1 > self.counters.1,
        };
        self.requests = requests;
        self.counters = totals;
        let changes = decide(&mut self.states, incidents, self.quiet, now);
        for change in &changes {
            match change {
                Change::Armed(hook, _) => probes.arm(*hook, true)?,
                Change::Disarmed(hook, _) => probes.arm(*hook, false)?,
            }
        }
        Ok(changes)
    }
}

/// The rule, apart from the kernel: an incident arms the hooks that explain it; a hook no
/// incident has wanted for `quiet` is disarmed.
pub fn decide(states: &mut [DeepState], incidents: Incidents, quiet: Duration, now: Instant) -> Vec<Change> {
    let mut changes = Vec::new();
    for state in states {
        if incidents.wants(state.hook) {
            state.last_wanted = Some(now);
            if !state.armed {
                state.armed = true;
                state.arms += 1;
                changes.push(Change::Armed(state.hook, incidents.why()));
            }
        } else if state.armed
            && let Some(last) = state.last_wanted
            && now.duration_since(last) >= quiet
        {
            state.armed = false;
            changes.push(Change::Disarmed(state.hook, now.duration_since(last)));
        }
    }
    changes
}

fn sum(counters: &BTreeMap<String, Counters>, names: &[&str]) -> u64 {
    counters.values().flat_map(|c| names.iter().filter_map(|n| c.get(*n))).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states() -> Vec<DeepState> {
        DeepHook::ALL.into_iter().map(|hook| DeepState { hook, armed: false, last_wanted: None, arms: 0 }).collect()
    }

    #[test]
    fn a_syn_incident_arms_both_an_out_of_window_one_only_transmit() {
        let (t0, quiet) = (Instant::now(), Duration::from_secs(60));
        let mut s = states();
        let oow = Incidents { out_of_window: true, ..Incidents::default() };
        assert_eq!(decide(&mut s, oow, quiet, t0), [Change::Armed(DeepHook::Transmit, "out-of-window drops")]);
        let syn = Incidents { syn: true, ..Incidents::default() };
        assert_eq!(decide(&mut s, syn, quiet, t0), [Change::Armed(DeepHook::Receive, "SYN drops")]);
        assert!(s.iter().all(|d| d.armed && d.arms == 1));
    }

    #[test]
    fn a_hook_is_disarmed_only_after_a_quiet_spell_and_armed_again_by_the_next_incident() {
        let (t0, quiet) = (Instant::now(), Duration::from_secs(60));
        let mut s = states();
        let syn = Incidents { syn: true, ..Incidents::default() };
        decide(&mut s, syn, quiet, t0);
        assert!(decide(&mut s, Incidents::default(), quiet, t0 + Duration::from_secs(59)).is_empty());
        // Wanted again at 30 s: the quiet spell starts over.
        decide(&mut s, syn, quiet, t0 + Duration::from_secs(30));
        assert!(decide(&mut s, Incidents::default(), quiet, t0 + Duration::from_secs(61)).is_empty());
        let off = decide(&mut s, Incidents::default(), quiet, t0 + Duration::from_secs(90));
        assert_eq!(off.len(), 2, "{off:?}");
        assert!(s.iter().all(|d| !d.armed));
        decide(&mut s, syn, quiet, t0 + Duration::from_secs(91));
        assert!(s.iter().all(|d| d.armed && d.arms == 2));
    }

    #[test]
    fn counter_rises_in_any_namespace_add_up() {
        let counters = BTreeMap::from([
            ("a".to_string(), Counters::from([("TcpExtListenOverflows".to_string(), 2)])),
            ("b".to_string(), Counters::from([("TcpExtPAWSTimewait".to_string(), 3), ("TcpExtPAWSEstab".to_string(), 7)])),
        ]);
        assert_eq!(sum(&counters, SYN_COUNTERS), 5);
        assert_eq!(sum(&counters, OOW_COUNTERS), 7);
    }
}
