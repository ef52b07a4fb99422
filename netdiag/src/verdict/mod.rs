//! Verdicts: findings that name a peer, say what it caused and what to do about it.
pub mod ack_loop;
pub mod paws;

use std::collections::BTreeMap;

use serde::Serialize;

/// One finding about one peer, as the diagnose JSON carries it.
#[derive(Clone, Debug, Serialize, PartialEq)]
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
    pub started: String,
    /// Null while the episode is still going at the end of the session.
    pub ended: Option<String>,
    /// Number name → how the kernel programs obtained it on this kernel.
    pub sources: BTreeMap<&'static str, String>,
}
