//! Verdicts: findings that name a peer, say what it caused and what to do about it.
pub mod paws;

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
}
