//! The guest half of `cargo xtask bench`'s per-backend row: netdiag's probes attached with one
//! backend forced at a time (fentry, kprobe, tracepoint), the same bounded traffic driven through
//! them, and each program's run count and run time from the kernel's BPF statistics
//! (`kernel.bpf_stats_enabled=1`): the time in the program only, not the attach mechanism's own
//! entry and exit. Backends alternate, the order rotated each round.
//!
//! Prints one `BACKEND_COST {json}` line per round, backend and logical hook, or one with an
//! `error`; the host (xtask/src/vmtest/backend_cost.rs) parses them from the guest's console.
//! The guest's /init starts it as it starts a test binary, with `--test-threads=1`, which it
//! ignores. `--rounds N` (default 3).
use std::{
    collections::HashMap,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Parser;
use netdiag::{
    hooks::{BackendChoice, Options, Probes},
    scenario::{self, LoopTopology, PawsTopology, Speed},
};
use serde_json::{Value, json};

/// What the host looks for on the console; xtask's parser knows it by the same name.
const LINE_PREFIX: &str = "BACKEND_COST ";
const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
const BACKENDS: [BackendChoice; 3] = [BackendChoice::Fentry, BackendChoice::Kprobe, BackendChoice::Tracepoint];
/// Stale segments injected on a live connection per pass: each a PAWS drop answered by a
/// duplicate ACK.
const STALE_SEGMENTS: u32 = 100;
/// Ordinary connections per pass: handshakes for the SYN-funnel and listener hooks.
const CONNECTIONS: u32 = 20;
/// The ACK loop per pass, shaped: duplicate ACKs and out-of-window segments by the thousand.
const LOOP_TIME: Duration = Duration::from_secs(1);
/// The loop's last segments drain before the statistics are read.
const LOOP_DRAIN: Duration = Duration::from_millis(500);

/// Cost per program run of each backend netdiag can force, measured in this (guest) kernel.
#[derive(Parser)]
struct Args {
    /// Rounds per backend.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

fn main() -> ExitCode {
    // A bad flag is reported on the result line like any failure, so the guest's row says why.
    let result = match Args::try_parse() {
        Ok(args) => measure_rounds(args.rounds),
        Err(help) if !help.use_stderr() => help.exit(),
        Err(bad) => Err(anyhow::anyhow!("{}", bad.render())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            println!("{LINE_PREFIX}{}", json!({ "error": format!("{err:#}") }));
            ExitCode::FAILURE
        }
    }
}

fn measure_rounds(rounds: u32) -> Result<()> {
    ensure!(unsafe { libc::geteuid() } == 0, "it loads eBPF programs and creates namespaces: run it as root");
    let traffic = Traffic::new()?;
    let stats_were = std::fs::read_to_string(BPF_STATS).unwrap_or_default();
    std::fs::write(BPF_STATS, "1").context("enable kernel.bpf_stats_enabled")?;
    let result = (1..=rounds).try_for_each(|round| {
        // The order rotates each round, so drift hits every backend alike.
        (0..BACKENDS.len()).try_for_each(|i| {
            let backend = BACKENDS[(i + round as usize) % BACKENDS.len()];
            measure(&traffic, backend, round).with_context(|| format!("{} in round {round}", backend.name()))
        })
    });
    let _ = std::fs::write(BPF_STATS, stats_were.trim());
    result
}

/// The topologies, built once: every measurement drives the same traffic through them.
struct Traffic {
    paws: PawsTopology,
    ack_loop: LoopTopology,
}

impl Traffic {
    fn new() -> Result<Traffic> {
        Ok(Traffic { paws: PawsTopology::new("cost")?, ack_loop: LoopTopology::new("costloop")? })
    }

    fn drive(&self) -> Result<()> {
        scenario::innocent_traffic(&self.paws, CONNECTIONS)?;
        scenario::paws_established(&self.paws, false, STALE_SEGMENTS)?;
        scenario::paws_time_wait(&self.paws)?;
        scenario::start_ack_loop_at(&self.ack_loop, LOOP_TIME, Speed::Shaped)?.finish()?;
        std::thread::sleep(LOOP_DRAIN);
        Ok(())
    }
}

/// Attaches with `backend` forced, drives the traffic twice and prints a line per logical hook:
/// the mechanism serving it and its programs' statistics over the second pass, or why it is not
/// served. The first pass warms up: an emulator (TCG) translates a program's machine code on its
/// first runs, which would dominate the cost of a hook that runs a few times.
fn measure(traffic: &Traffic, backend: BackendChoice, round: u32) -> Result<()> {
    let started = Instant::now();
    let probes = Probes::attach_available(&Options { backend, ..Options::default() })?;
    traffic.drive()?;
    let before = run_stats(&probes);
    traffic.drive()?;
    let after = run_stats(&probes);
    for hook in &probes.hooks {
        let programs = hook
            .programs
            .iter()
            .map(|name| {
                let (Some(before), Some(after)) = (before.get(*name), after.get(*name)) else {
                    bail!("program {name} has no kernel record");
                };
                Ok(json!({
                    "name": name,
                    "run_count": after.run_count - before.run_count,
                    "run_time_ns": after.run_time_ns - before.run_time_ns,
                }))
            })
            .collect::<Result<Vec<Value>>>()?;
        let mut line = json!({
            "round": round,
            "backend": backend.name(),
            "hook": hook.name,
            "mechanism": hook.backend,
            "programs": programs,
        });
        if !hook.active {
            line["why"] = hook.detail.clone().into();
        }
        println!("{LINE_PREFIX}{line}");
    }
    eprintln!("backend_cost: {} in round {round}: {:.1} s", backend.name(), started.elapsed().as_secs_f64());
    Ok(())
}

struct RunStats {
    run_count: u64,
    run_time_ns: u64,
}

/// The kernel's statistics of every loaded program, by name.
fn run_stats(probes: &Probes) -> HashMap<String, RunStats> {
    probes
        .program_infos()
        .into_iter()
        .map(|(name, info)| {
            (name, RunStats { run_count: info.run_count(), run_time_ns: info.run_time().as_nanos() as u64 })
        })
        .collect()
}
