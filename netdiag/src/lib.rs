//! netdiag: names the peer behind TCP PAWS rejections, unanswered SYNs and ACK loops.
//!
//! The pipeline reads top to bottom: `hooks` (load and attach kernel programs) →
//! `events` (ring-buffer records) → `aggregate` (per-peer state) → `verdict`
//! (findings) → `output` (text and JSON). `counters` reads the kernel's own TCP counters to
//! reconcile; `scenario` reproduces the incidents for tests, `selftest` and benchmarks.

pub mod agent;
pub mod aggregate;
pub mod btf;
pub mod clock;
pub mod counters;
pub mod error;
pub mod events;
pub mod filter;
pub mod handshakes;
pub mod hooks;
pub mod netns;
pub mod operator;
pub mod output;
pub mod peer;
pub mod scenario;
pub mod selftest;
pub mod session;
pub mod top;
pub mod tracefs;
pub mod verdict;
pub mod workload;

/// The compiled kernel programs, built by build.rs.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netdiag"));
