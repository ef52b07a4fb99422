//! Ordinary traffic under each tracer (issue #15, item 1) and netdiag's start-up (item 5).
//!
//! Four contenders take turns, the order rotated each round: no tracer, `netdiag agent` (default
//! config), `netdiag diagnose` (no filter, as a user diagnosing the host runs it) and bpftrace
//! counting the PAWS drop reasons on skb:kfree_skb. Each contender's session runs the three
//! workloads of `scenario::ordinary` in turn, a fixed time each, client and server pinned. The
//! ratios are to the untraced median of this run; the spread beside each ratio is the lowest and
//! highest per-round ratio (each traced run against the untraced run of the same round).
//!
//! Start-up is measured from outside, launch to the ready line (agent, diagnose) or to exit
//! (`netdiag hooks --json`, which attaches and detaches every hook): netdiag has no phase timings.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use netdiag::scenario::{OrdinaryTopology, Pinning, Workload, run_ordinary};
use netdiag_tests::{
    Diagnose,
    agent::{Agent, TempDir},
    netdiag_bin,
};
use serde_json::{Value, json};

use super::{Bpftrace, Plan, bpftrace_paws_script, max, median, min, round3};

const HOOKS_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Who {
    Untraced,
    Agent,
    Diagnose,
    Bpftrace,
}

impl Who {
    pub(super) const ALL: [Who; 4] = [Who::Untraced, Who::Agent, Who::Diagnose, Who::Bpftrace];

    fn name(self) -> &'static str {
        match self {
            Who::Untraced => "no tracer",
            Who::Agent => "netdiag agent",
            Who::Diagnose => "netdiag diagnose",
            Who::Bpftrace => "bpftrace",
        }
    }

    fn target(self) -> &'static str {
        match self {
            Who::Agent => "≥ 0.99 of untraced",
            Who::Diagnose => "≥ 0.97 of untraced",
            _ => "",
        }
    }
}

enum Session {
    None,
    Agent(Agent),
    Diagnose(Diagnose),
    Bpftrace(Bpftrace),
}

impl Session {
    fn stop(self) -> Result<()> {
        match self {
            Session::None => {}
            Session::Agent(agent) => agent.stop(),
            Session::Diagnose(diagnose) => {
                diagnose.finish()?;
            }
            Session::Bpftrace(bpftrace) => {
                bpftrace.finish(0)?;
            }
        }
        Ok(())
    }
}

struct Measured {
    round: usize,
    /// Tracing programs someone else had loaded when this contender's session began.
    foreign: usize,
    who: Who,
    workload: Workload,
    per_second: f64,
}

fn label(workload: Workload) -> &'static str {
    match workload {
        Workload::PingPong => "ordinary: 1-byte request/response, transactions/s",
        Workload::Bulk => "ordinary: bulk, 64 KiB writes, bytes/s",
        Workload::ConnectionRate => "ordinary: connect, server closes, close; conns/s",
    }
}

/// The ordinary-traffic rows, then the start-up rows (agent and diagnose from the sessions
/// started here, `netdiag hooks --json` run `plan.hooks_runs` times, the verifier's work per
/// program of the first agent).
pub(super) fn rows(plan: &Plan) -> Result<Vec<Value>> {
    let (contenders, workloads) = (&plan.contenders, &plan.workloads);
    let began = Instant::now();
    let topo = OrdinaryTopology::new("benchord")?;
    let dir = TempDir::new("benchord");
    let script = bpftrace_paws_script()?;
    let pinning = Pinning::same(0);
    let duration = Duration::from_secs(plan.ordinary_seconds);
    let mut measured: Vec<Measured> = Vec::new();
    let mut agent_starts = Vec::new();
    let mut diagnose_starts = Vec::new();
    let mut verifier: Vec<VerifierWork> = Vec::new();
    let mut foreign_names = std::collections::BTreeSet::new();
    for round in 0..plan.repeats {
        for i in 0..contenders.len() {
            let who = contenders[(i + round) % contenders.len()];
            // Ours are all gone by now (stopped, then the settling pause below).
            let others = foreign_tracing_programs();
            foreign_names.extend(others.iter().cloned());
            let launched = Instant::now();
            let session = match who {
                Who::Untraced => Session::None,
                Who::Agent => {
                    let agent = Agent::start(&dir.0, "");
                    agent_starts.push(launched.elapsed().as_secs_f64());
                    if verifier.is_empty() {
                        verifier = verifier_work(&agent.attached.progs)?;
                    }
                    Session::Agent(agent)
                }
                Who::Diagnose => {
                    let diagnose = Diagnose::start(&[])?;
                    diagnose_starts.push(launched.elapsed().as_secs_f64());
                    Session::Diagnose(diagnose)
                }
                Who::Bpftrace => Session::Bpftrace(Bpftrace::start(&script)?),
            };
            for &workload in workloads {
                let run = run_ordinary(&topo, workload, duration, pinning)
                    .with_context(|| format!("{} under {}, round {}", workload.name(), who.name(), round + 1))?;
                eprintln!("bench: {:<48} {:<16} {:>14.0} {}/s", workload.name(), who.name(), run.per_second(), workload.unit());
                measured.push(Measured { round, foreign: others.len(), who, workload, per_second: run.per_second() });
            }
            session.stop().with_context(|| format!("stop {}", who.name()))?;
            // Let the last connections' TIME_WAIT and the tracer's exit settle.
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let traffic_s = began.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    for &workload in workloads {
        let of = |who: Who| -> Vec<f64> {
            measured.iter().filter(|m| m.who == who && m.workload == workload).map(|m| m.per_second).collect()
        };
        let untraced = median(of(Who::Untraced));
        for &who in contenders {
            let rates = of(who);
            // Each traced run against the untraced run of its own round.
            let per_round: Vec<f64> = measured
                .iter()
                .filter(|m| m.who == who && m.workload == workload)
                .filter_map(|m| {
                    let base = measured.iter().find(|u| u.who == Who::Untraced && u.workload == workload && u.round == m.round)?;
                    Some(m.per_second / base.per_second)
                })
                .collect();
            let runs: Vec<&Measured> = measured.iter().filter(|m| m.who == who && m.workload == workload).collect();
            let disturbed = runs.iter().filter(|m| m.foreign > 0).count();
            let mut note = if who == Who::Untraced {
                format!("{}, {} s per run", pinning.describe(), plan.ordinary_seconds)
            } else {
                format!("ratio per round {:.3} … {:.3}", min(&per_round), max(&per_round))
            };
            if disturbed > 0 {
                note += &format!("; someone else's tracing programs loaded in {disturbed} of {} runs", runs.len());
            }
            rows.push(json!({
                "measure": label(workload),
                "contender": who.name(),
                "median": median(rates.clone()).round(), "min": min(&rates).round(), "max": max(&rates).round(),
                "ratio_to_untraced": round3(median(rates) / untraced),
                "ratio_per_round_min": round3(min(&per_round)), "ratio_per_round_max": round3(max(&per_round)),
                "pinning": pinning.describe(),
                "runs_with_foreign_tracing_programs": disturbed,
                "seconds_per_run": plan.ordinary_seconds,
                "target": who.target(),
                "note": note,
            }));
        }
    }
    let hooks_began = Instant::now();
    let mut hooks_runs = Vec::new();
    for _ in 0..plan.hooks_runs {
        hooks_runs.push(hooks_wall_time()?);
    }
    let hooks_s = hooks_began.elapsed().as_secs_f64();
    for (measure, contender, starts, target) in [
        ("start-up: launch to serving (s)", "netdiag agent", &agent_starts, "≤ 0.5 s"),
        ("start-up: launch to tracing started (s)", "netdiag diagnose", &diagnose_starts, "≤ 0.5 s"),
        ("  … `netdiag hooks --json`, launch to exit (s)", "netdiag hooks", &hooks_runs, "attaches and detaches every hook"),
    ] {
        rows.push(json!({
            "measure": measure,
            "contender": contender,
            "median": round3(median(starts.clone())), "min": round3(min(starts)), "max": round3(max(starts)),
            "target": target,
        }));
    }
    // The same every run: what the kernel's verifier walked through to accept each program.
    let total: u64 = verifier.iter().map(|v| v.verified).sum();
    for v in &verifier {
        rows.push(json!({
            "measure": format!("  … verifier: instructions processed, {}", v.name),
            "contender": "netdiag agent",
            "median": v.verified,
            "target": "",
            "note": format!("{} instructions loaded, {:.0}% of the kernel's 1 M limit", v.instructions, v.verified as f64 / 10_000.0),
        }));
    }
    if !verifier.is_empty() {
        rows.push(json!({
            "measure": "  … verifier: instructions processed, all programs",
            "contender": "netdiag agent",
            "median": total,
            "target": "",
            "note": format!("{} programs", verifier.len()),
        }));
    }
    if !foreign_names.is_empty() {
        let most = measured.iter().map(|m| m.foreign).max().unwrap_or(0);
        rows.push(json!({
            "measure": "  … tracing programs loaded by others (most at once)",
            "contender": "not ours",
            "median": most,
            "target": "none: they run under every contender, no tracer included",
            "note": foreign_names.iter().cloned().collect::<Vec<_>>().join(", "),
        }));
    }
    rows.push(json!({
        "measure": "  … time these rows took (s): traffic rounds, hooks runs",
        "contender": "bench",
        "median": round3(traffic_s + hooks_s),
        "target": "",
        "note": format!("traffic rounds {traffic_s:.0} s, hooks runs {hooks_s:.0} s"),
    }));
    Ok(rows)
}

/// `--workloads` names, as the rows' labels abbreviate them.
pub(super) fn parse_workload(name: &str) -> Result<Workload, String> {
    match name {
        "pingpong" => Ok(Workload::PingPong),
        "bulk" => Ok(Workload::Bulk),
        "connrate" => Ok(Workload::ConnectionRate),
        _ => Err("pingpong, bulk or connrate".to_owned()),
    }
}

/// `netdiag hooks --json` from launch to exit; killed after a minute.
fn hooks_wall_time() -> Result<f64> {
    let launched = Instant::now();
    let mut child = Command::new(netdiag_bin())
        .args(["hooks", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("run {} hooks --json", netdiag_bin()))?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if launched.elapsed() > HOOKS_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("netdiag hooks --json still ran after {HOOKS_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = launched.elapsed().as_secs_f64();
    ensure!(status.success(), "netdiag hooks --json exited with {status}");
    Ok(elapsed)
}

/// One program the agent holds, and the instructions the verifier processed to accept it
/// (`verified_insns` of the kernel's program info, 5.16+).
struct VerifierWork {
    name: String,
    instructions: u64,
    verified: u64,
}

fn verifier_work(progs: &std::collections::BTreeSet<u64>) -> Result<Vec<VerifierWork>> {
    let mut work = Vec::new();
    for info in aya::programs::loaded_programs() {
        let Ok(info) = info else { continue };
        if !progs.contains(&u64::from(info.id())) {
            continue;
        }
        let Some(verified) = info.verified_instruction_count() else { continue };
        work.push(VerifierWork {
            name: info.name_as_str().unwrap_or("?").to_owned(),
            instructions: u64::from(info.size_translated().unwrap_or(0) / 8),
            verified: u64::from(verified),
        });
    }
    // Heaviest first.
    work.sort_by_key(|w| std::cmp::Reverse(w.verified));
    Ok(work)
}

/// Names of the tracing programs (tracepoint, raw tracepoint, fentry, kprobe) loaded on this
/// kernel: between our sessions, someone else's (another `netdiag`, a stray bpftrace), which
/// run on the packets of every contender alike.
fn foreign_tracing_programs() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|info| {
            let kind = format!("{:?}", info.program_type());
            kind.contains("TRACEPOINT") || kind.contains("TRACING") || kind.contains("KPROBE")
        })
        .map(|info| info.name_as_str().unwrap_or("?").to_owned())
        .collect()
}
