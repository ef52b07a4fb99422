//! Verdicts: findings that name a peer, say what it caused and what to do about it.
pub mod ack_loop;
pub mod nat_clocks;
pub mod paws;
pub mod scorecard;
pub mod syn_funnel;

use std::collections::BTreeMap;

use serde::Serialize;

/// One finding about one peer, as the diagnose JSON carries it. Fields after `advice` belong
/// to some kinds only and are left out of the JSON elsewhere.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Finding {
    pub kind: &'static str,
    pub variant: &'static str,
    /// Bare address of the peer.
    pub peer: String,
    pub netns: String,
    /// Local endpoints (address:port) the peer's rejected segments were sent to.
    pub local: Vec<String>,
    pub count: u64,
    pub rate_per_s: f64,
    pub first_seen: String,
    pub last_seen: String,
    pub summary: String,
    pub advice: String,
    /// `unanswered_syns`: the listening port the SYNs were sent to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener_port: Option<u16>,
    /// `unanswered_syns`: the peer's SYN funnel on that listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub funnel: Option<syn_funnel::Funnel>,
    /// `unanswered_syns`: drops by kernel reason name, and counter-only causes by counter name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drops: Option<BTreeMap<String, u64>>,
    /// `unanswered_syns`: the cause in words, as the kernel gave it or the counters show it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `nat_timestamp_clocks`: how many timestamp clocks (hosts) at least hide behind the address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clocks: Option<usize>,
    /// The facts the finding rests on (counters, drop reasons, packets, rates), in words; for
    /// `nat_timestamp_clocks`, why those clocks cannot be one host's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Vec<String>>,
    /// What would prove the finding wrong, if seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disproved_by: Option<String>,
    /// The kernel facts behind the finding, as the scorecard reads them (`verdict::scorecard`):
    /// fact → what the kernel said. Empty: nothing the kernel reported backs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_facts: Option<BTreeMap<String, u64>>,
    /// Whether the kernel facts this kind's claim needs moved; false: treat it as unconfirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backed: Option<bool>,
    /// The container, pod or host behind `netns` (set by the session, not the detectors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<crate::workload::Workload>,
    /// The workload on this host that holds the peer's address, when exactly one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_workload: Option<crate::workload::Workload>,
    /// Facts of a finding about one flow (`ack_loop`, `out_of_window_flood`), inline in the JSON.
    #[serde(flatten)]
    pub flow: Option<FlowFacts>,
}

/// What an ACK-loop or out-of-window-flood finding adds: the flow's rates over the episode and
/// how each number was obtained.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FlowFacts {
    /// The peer's port (the peer's address is `peer`, the local endpoint `local`).
    pub peer_port: u16,
    pub oow_in_per_s: f64,
    pub dupacks_out_per_s: f64,
    pub dupacks_suppressed_per_s: f64,
    /// Counts over the episode (`count` is the out-of-window segments in).
    pub dupacks_out: u64,
    pub dupacks_suppressed: u64,
    /// Which check found the segments out of window: `timestamps`, `sequence` or `ack`.
    pub why: &'static str,
    /// The connection's smoothed round-trip time (µs) at our latest duplicate ACK; null where
    /// the kernel program could not read it.
    pub srtt_us: Option<u64>,
    /// Segments in per smoothed round trip: about 1 when each answers our previous one.
    pub segments_per_round_trip: Option<f64>,
    pub started: String,
    /// Null while the episode is still going at the end of the session.
    pub ended: Option<String>,
    /// Number name → how the kernel programs obtained it on this kernel.
    pub sources: BTreeMap<&'static str, String>,
}
