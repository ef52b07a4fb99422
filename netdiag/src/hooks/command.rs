//! `netdiag hooks`: attach everything the running kernel allows, say which backend serves each
//! logical hook and why the others were refused, then detach.
use anyhow::Result;
use serde::Serialize;

use super::{BackendChoice, HookStatus, Options, Probes};

#[derive(Debug, clap::Args)]
pub struct HooksArgs {
    /// One JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Which attach mechanism may serve the hooks: the best one per hook, or only this one (hooks
    /// that exist only as tracepoints keep them).
    #[arg(long, value_enum, env = "NETDIAG_BACKEND", default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
}

#[derive(Serialize)]
struct HooksReport {
    kernel: String,
    backend: BackendChoice,
    hooks: Vec<HookStatus>,
}

/// Exits 0 whenever the survey ran, even if no hook could be attached: the report says why.
pub fn run(args: HooksArgs) -> Result<i32> {
    let probes =
        Probes::attach_available(&Options { backend: args.backend, ..Options::default() })?;
    let report = HooksReport {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        backend: args.backend,
        hooks: probes.hooks.clone(),
    };
    drop(probes);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(0)
}

impl HooksReport {
    fn to_text(&self) -> String {
        let mut out =
            format!("netdiag hooks — kernel {}, backend {}\n\n", self.kernel, self.backend.name());
        for hook in &self.hooks {
            if hook.active {
                out += &format!(
                    "  {:<17} active via {:<10}  {}\n",
                    hook.name, hook.backend, hook.detail
                );
            } else {
                out += &format!("  {:<17} unavailable\n", hook.name);
            }
            if hook.active && hook.per_packet {
                out += "      runs per packet: `netdiag agent` attaches it only while an incident calls for it\n";
            }
            for reason in &hook.refused {
                out += &format!("      refused {reason}\n");
            }
        }
        let active = self.hooks.iter().filter(|hook| hook.active).count();
        let per_packet = self.hooks.iter().filter(|hook| hook.active && hook.per_packet).count();
        out += &format!(
            "\n{active} of {} hooks active; {per_packet} of them run per packet (armed on demand by the agent).\n",
            self.hooks.len()
        );
        out
    }
}
