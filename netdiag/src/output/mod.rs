//! Output: the diagnose report as JSON (a contract others parse) and as text for a person.
pub mod top;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{counters::Counters, hooks::{HookStatus, ProbeStats}, verdict::Finding};

#[derive(Clone, Debug, Serialize)]
pub struct PeerReport {
    pub addr: String,
    pub netns: String,
    /// Drop counts by kernel reason name, exact (kept in a kernel map).
    pub by_reason: BTreeMap<String, u64>,
}

/// For one namespace and counter: what the kernel counted and how much netdiag pinned on peers.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Attribution {
    pub netns: String,
    pub counter: String,
    pub kernel_delta: u64,
    pub attributed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub duration_s: f64,
    pub hooks: Vec<HookStatus>,
    pub peers: Vec<PeerReport>,
    pub findings: Vec<Finding>,
    /// Non-zero TCP counter deltas of the session, per namespace name.
    pub counters: BTreeMap<String, Counters>,
    pub attribution: Vec<Attribution>,
    /// Samples the kernel could not put in the ring buffer (full). Counts stay exact regardless.
    pub lost_events: u64,
    /// Packets with a watched drop reason whose headers could not be parsed.
    pub unparsed_packets: u64,
    pub probe_stats: ProbeStats,
}

const WIDTH: usize = 96;

fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

impl Report {
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "netdiag diagnose — kernel {}, {:.1} s, {} finding(s)\n\nhooks:\n",
            self.kernel,
            self.duration_s,
            self.findings.len()
        );
        for hook in &self.hooks {
            let state = if hook.active { "active" } else { "unavailable" };
            out += &format!("  {:<18} {:<11} {:<12} {}\n", hook.name, hook.backend, state, hook.detail);
        }
        out += "\nfindings:\n";
        if self.findings.is_empty() {
            out += "  none: no watched drop was attributed to any peer during the session\n";
        }
        for f in &self.findings {
            out += &format!(
                "  [{} / {}] peer {} (netns {}) → {}: {} drops, {:.2}/s, {} … {}\n",
                f.kind,
                f.variant,
                f.peer,
                f.netns,
                if f.local.is_empty() { "-".to_string() } else { f.local.join(", ") },
                f.count,
                f.rate_per_s,
                f.first_seen,
                f.last_seen
            );
            if let Some(flow) = &f.flow {
                out += &format!(
                    "    {:.1} out-of-window/s in, {:.1} duplicate ACKs/s out, {:.1}/s suppressed; why: {}; {} … {}\n",
                    flow.oow_in_per_s,
                    flow.dupacks_out_per_s,
                    flow.dupacks_suppressed_per_s,
                    flow.why,
                    flow.started,
                    flow.ended.as_deref().unwrap_or("ongoing")
                );
            }
            out += &wrap(&f.summary, "    ");
            out += "\n";
            out += &wrap(&format!("What to do: {}", f.advice), "    ");
            out += "\n\n";
        }
        out += "kernel counters (session deltas, per namespace):\n";
        if self.counters.is_empty() {
            out += "  no TCP counter moved\n";
        }
        for (ns, counters) in &self.counters {
            let list: Vec<String> = counters.iter().map(|(k, v)| format!("{k} {v}")).collect();
            out += &wrap(&format!("{ns}: {}", list.join(", ")), "  ");
            out += "\n";
        }
        for a in &self.attribution {
            out += &format!(
                "  {} {}: kernel counted {}, attributed to named peers {}\n",
                a.netns, a.counter, a.kernel_delta, a.attributed
            );
        }
        out += &format!(
            "\nlost events: {} (ring buffer full; per-peer counts unaffected), unparsed packets: {}\n",
            self.lost_events, self.unparsed_packets
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_long_text_at_word_boundaries() {
        let text = "word ".repeat(40);
        let wrapped = wrap(&text, "  ");
        assert!(wrapped.lines().all(|l| l.len() <= WIDTH && l.starts_with("  word")));
        assert_eq!(wrapped.split_whitespace().count(), 40);
    }
}
