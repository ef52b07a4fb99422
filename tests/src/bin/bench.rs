//! The measurements behind `cargo xtask bench`: each contender (no tracer, netdiag, a bpftrace
//! script counting the same events on the same hooks) runs the same reproduction in turn,
//! alternating and repeated, and only ratios measured side by side in this one run are reported.
//! Targets are printed beside the figures, never asserted: these machines are shared and noisy.
//! `--guest-rows FILE` adds the rows `cargo xtask bench` measured in a qemu guest (the cost per
//! run of each backend, fentry, kprobe and tracepoint, which this host may refuse).
//! `--only PART[,PART...]` runs only some parts (drop, loop, flood, ordinary), for development;
//! with `ordinary`, `--contenders` and `--workloads` narrow it further; `--help` lists them all.
use std::{
    io::{BufRead, BufReader, Read as _},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Parser;
use netdiag::{
    btf::Btf,
    hooks::{PAWS_REASONS, ReasonTable},
    scenario::{self, FloodSpec, FloodTopology, LoopTopology, PawsTopology, Speed, syn_flood},
};
use netdiag_tests::{
    Diagnose, PeakRss,
    agent::{Agent, TempDir},
    findings_for, nstat,
};
use serde_json::{Value, json};

#[path = "bench/ordinary.rs"]
mod ordinary;

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

struct Plan {
    repeats: usize,
    /// Rejected segments injected per run.
    segments: u32,
    /// Distinct spoofed sources of the memory flood.
    flood_sources: u32,
    /// Seconds each ordinary-traffic workload runs per contender and round.
    ordinary_seconds: u64,
    /// Runs of `netdiag hooks --json` timed for the start-up rows.
    hooks_runs: usize,
    /// The ordinary part's contenders and workloads.
    contenders: Vec<ordinary::Who>,
    workloads: Vec<scenario::Workload>,
    out: PathBuf,
}

/// The parts `--only` can pick, in the order they run.
const PARTS: [&str; 4] = ["drop", "loop", "flood", "ordinary"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contender {
    Untraced,
    Netdiag,
    Bpftrace,
}

impl Contender {
    const ALL: [Contender; 3] = [Contender::Untraced, Contender::Netdiag, Contender::Bpftrace];

    fn name(self) -> &'static str {
        match self {
            Contender::Untraced => "no tracer",
            Contender::Netdiag => "netdiag",
            Contender::Bpftrace => "bpftrace",
        }
    }
}

/// What one run of the drop-path reproduction measured under one contender.
#[derive(Debug, Default)]
struct DropRun {
    segments_per_s: f64,
    /// Nanoseconds per program run (kernel.bpf_stats_enabled), the tracer's programs only.
    ns_per_run: Option<f64>,
    /// The tracer counted exactly what the kernel rejected (nstat in the server namespace).
    exact: Option<bool>,
    lost_events: Option<u64>,
    startup_s: Option<f64>,
    /// Where netdiag's time went while the segments were injected, as shares of the
    /// injection's wall time: its kernel programs (bpf_stats) and its own process (all
    /// threads, user and system time), against the untraced run's loss.
    program_share: Option<f64>,
    userspace_share: Option<f64>,
}

/// Side-by-side measurements of netdiag against no tracer and bpftrace (ratios from this one run).
#[derive(Parser)]
struct Args {
    /// Three rounds and smaller reproductions instead of five (a few minutes less).
    #[arg(long)]
    quick: bool,
    /// Where the rows go, as JSON.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// Rows measured in a qemu guest by `cargo xtask bench`, printed with these.
    #[arg(long, value_name = "FILE")]
    guest_rows: Option<PathBuf>,
    /// Run only these parts (all by default), for development.
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(PARTS))]
    only: Vec<String>,
    /// With the ordinary part: only these contenders (all by default).
    #[arg(long, value_delimiter = ',', value_enum)]
    contenders: Vec<ordinary::Who>,
    /// With the ordinary part: only these workloads (all by default).
    #[arg(long, value_delimiter = ',', value_parser = ordinary::parse_workload)]
    workloads: Vec<scenario::Workload>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let quick = args.quick;
    let guest_rows = match &args.guest_rows {
        Some(path) => read_guest_rows(path)?,
        None => Vec::new(),
    };
    let wants = |part: &str| args.only.is_empty() || args.only.iter().any(|p| p == part);
    let plan = Plan {
        repeats: if quick { 3 } else { 5 },
        segments: if quick { 100_000 } else { 300_000 },
        flood_sources: if quick { 300_000 } else { 1_000_000 },
        ordinary_seconds: if quick { 3 } else { 5 },
        hooks_runs: if quick { 1 } else { 3 },
        contenders: if args.contenders.is_empty() { ordinary::Who::ALL.to_vec() } else { args.contenders },
        workloads: if args.workloads.is_empty() { scenario::Workload::ALL.to_vec() } else { args.workloads },
        out: args.out,
    };
    ensure!(unsafe { libc::geteuid() } == 0, "the bench loads eBPF programs and creates namespaces: run it as root");
    let mut machine = machine();
    let mut rows = Vec::new();
    if wants("drop") || wants("loop") {
        // Both parts read the programs' own run times.
        let stats_were = std::fs::read_to_string(BPF_STATS).unwrap_or_default();
        std::fs::write(BPF_STATS, "1").context("enable kernel.bpf_stats_enabled")?;
        let result = (|| -> Result<Vec<Value>> {
            let mut rows = if wants("drop") { drop_path(&plan)? } else { Vec::new() };
            if wants("loop") {
                rows.extend(ack_loop_rate(&plan)?);
            }
            Ok(rows)
        })();
        let _ = std::fs::write(BPF_STATS, stats_were.trim());
        rows.extend(result?);
    }
    if wants("flood") {
        rows.extend(flood_memory(&plan)?);
    }
    if wants("ordinary") {
        rows.extend(ordinary::rows(&plan)?);
    }
    rows.extend(guest_rows);
    // Load before and after: these machines are shared, and the spreads depend on it.
    machine["loadavg_at_end"] = json!(loadavg());
    print_table(&machine, &rows);
    if let Some(dir) = plan.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&plan.out, serde_json::to_string_pretty(&json!({ "machine": machine, "rows": rows }))?)?;
    println!("\nresults: {}", plan.out.display());
    Ok(())
}

/// PAWS rejections injected as fast as one raw socket sends them, each dropped by the server
/// (reason TCP_RFC7323_PAWS) and so run through every tracer's program on skb:kfree_skb.
fn drop_path(plan: &Plan) -> Result<Vec<Value>> {
    let topo = PawsTopology::new("bench")?;
    let script = bpftrace_paws_script()?;
    let mut runs: Vec<(Contender, DropRun)> = Vec::new();
    for repeat in 0..plan.repeats {
        // Alternating, with the order rotated per round, so drift hits every contender alike.
        for i in 0..Contender::ALL.len() {
            let contender = Contender::ALL[(i + repeat) % Contender::ALL.len()];
            let run = drop_run(&topo, contender, plan.segments, &script)
                .with_context(|| format!("{} run {}", contender.name(), repeat + 1))?;
            eprintln!("bench: {:<10} {:>10.0} segments/s", contender.name(), run.segments_per_s);
            runs.push((contender, run));
        }
    }
    let of = |c: Contender| runs.iter().filter(move |(who, _)| *who == c).map(|(_, r)| r);
    let untraced = median(of(Contender::Untraced).map(|r| r.segments_per_s).collect());
    let mut rows = Vec::new();
    for contender in Contender::ALL {
        let rates: Vec<f64> = of(contender).map(|r| r.segments_per_s).collect();
        let rate = median(rates.clone());
        rows.push(json!({
            "measure": "PAWS drop path: segments/s through skb:kfree_skb",
            "contender": contender.name(),
            "median": rate.round(), "min": min(&rates).round(), "max": max(&rates).round(),
            "ratio_to_untraced": round3(rate / untraced),
            "target": match contender { Contender::Netdiag => "≥ 0.95 of untraced", _ => "" },
        }));
    }
    for contender in [Contender::Netdiag, Contender::Bpftrace] {
        let costs: Vec<f64> = of(contender).filter_map(|r| r.ns_per_run).collect();
        if costs.is_empty() {
            continue;
        }
        rows.push(json!({
            "measure": "cost per program run on skb:kfree_skb (ns, bpf_stats)",
            "contender": contender.name(),
            "median": round3(median(costs.clone())), "min": round3(min(&costs)), "max": round3(max(&costs)),
            "target": match contender { Contender::Netdiag => "≤ bpftrace's", _ => "" },
        }));
    }
    let netdiag: Vec<&DropRun> = of(Contender::Netdiag).collect();
    // What the shortfall is made of: a CPU busy in netdiag's programs or its process is one the
    // injection cannot use (the machine has two).
    let shares = |pick: fn(&DropRun) -> Option<f64>| -> Vec<f64> { netdiag.iter().filter_map(|r| pick(r)).collect() };
    for (what, values) in [
        ("its kernel programs, all attach points (bpf_stats)", shares(|r| r.program_share)),
        ("netdiag process, all threads (user + system)", shares(|r| r.userspace_share)),
    ] {
        if values.is_empty() {
            continue;
        }
        rows.push(json!({
            "measure": format!("… drop path: CPU in {what}, share of the run's wall time"),
            "contender": "netdiag",
            "median": round3(median(values.clone())), "min": round3(min(&values)), "max": round3(max(&values)),
            "target": format!("shortfall to untraced: {:.3}", 1.0 - median(netdiag.iter().map(|r| r.segments_per_s).collect()) / untraced),
        }));
    }
    let startups: Vec<f64> = netdiag.iter().filter_map(|r| r.startup_s).collect();
    rows.push(json!({
        "measure": "start-up: launch to every hook attached (s)",
        "contender": "netdiag",
        "median": round3(median(startups.clone())), "min": round3(min(&startups)), "max": round3(max(&startups)),
        "target": "≤ 0.5 s",
    }));
    let rates: Vec<f64> = netdiag.iter().map(|r| r.segments_per_s).collect();
    rows.push(json!({
        "measure": "relevant events/s traced, all counted exactly",
        "contender": "netdiag",
        "median": median(rates.clone()).round(), "min": min(&rates).round(), "max": max(&rates).round(),
        "exact_in_every_run": netdiag.iter().all(|r| r.exact == Some(true)),
        "lost_events_total": netdiag.iter().filter_map(|r| r.lost_events).sum::<u64>(),
        "target": "≥ 1 M/s where the machine allows; counts = kernel counters; losses reported",
    }));
    let bpftrace_exact = of(Contender::Bpftrace).all(|r| r.exact == Some(true));
    rows.push(json!({
        "measure": "bpftrace counted exactly too",
        "contender": "bpftrace",
        "median": Value::Null,
        "exact_in_every_run": bpftrace_exact,
        "target": "",
    }));
    Ok(rows)
}

/// Seconds each unbounded ACK loop runs.
const LOOP_SECONDS: u64 = 3;

/// The incident itself as the worst case: an unshaped ACK loop between two namespaces
/// (sequence-flipping router, `tcp_invalid_ratelimit=0`), its packet rate with no tracer, under
/// `netdiag agent`, and under a bpftrace script counting the same events per flow on the same
/// tracepoints. The rate is what both ends received (`TcpInSegs`), per second.
fn ack_loop_rate(plan: &Plan) -> Result<Vec<Value>> {
    let topo = LoopTopology::new("benchloop")?;
    let dir = TempDir::new("benchloop");
    let script = bpftrace_loop_script()?;
    let mut runs: Vec<(Contender, LoopRun)> = Vec::new();
    for repeat in 0..plan.repeats {
        for i in 0..Contender::ALL.len() {
            let contender = Contender::ALL[(i + repeat) % Contender::ALL.len()];
            let run = loop_run(&topo, &dir, contender, &script).with_context(|| format!("ACK loop under {}", contender.name()))?;
            eprintln!("bench: ACK loop, {:<10} {:>10.0} packets/s", contender.name(), run.packets_per_s);
            runs.push((contender, run));
        }
    }
    let rates = |c: Contender| -> Vec<f64> { runs.iter().filter(|(who, _)| *who == c).map(|(_, r)| r.packets_per_s).collect() };
    let untraced = median(rates(Contender::Untraced));
    let mut rows: Vec<Value> = Contender::ALL
        .iter()
        .map(|contender| {
            let r = rates(*contender);
            let name = if *contender == Contender::Netdiag { "netdiag agent" } else { contender.name() };
            json!({
                "measure": "ACK loop (unshaped, seed 001): packets/s both ends receive",
                "contender": name,
                "median": median(r.clone()).round(), "min": min(&r).round(), "max": max(&r).round(),
                "ratio_to_untraced": round3(median(r) / untraced),
                "target": match contender { Contender::Netdiag => "≥ 0.95 of untraced", Contender::Bpftrace => "measured 0.55–0.67", _ => "" },
            })
        })
        .collect();
    // The loop's rate swings with where the scheduler puts its two ends; the programs' time per
    // packet does not, so it is what tells two builds apart.
    for contender in [Contender::Netdiag, Contender::Bpftrace] {
        let costs: Vec<f64> = runs.iter().filter(|(who, _)| *who == contender).filter_map(|(_, r)| r.program_ns_per_packet).collect();
        if costs.is_empty() {
            continue;
        }
        rows.push(json!({
            "measure": "… ACK loop: program time per packet received, all attach points (ns, bpf_stats)",
            "contender": contender.name(),
            "median": round3(median(costs.clone())), "min": round3(min(&costs)), "max": round3(max(&costs)),
            "target": match contender { Contender::Netdiag => "≤ bpftrace's", _ => "" },
        }));
    }
    Ok(rows)
}

/// What one run of the unshaped ACK loop measured under one contender.
struct LoopRun {
    packets_per_s: f64,
    /// The tracer's programs' run time over the run, per packet both ends received.
    program_ns_per_packet: Option<f64>,
}

fn loop_run(topo: &LoopTopology, dir: &TempDir, contender: Contender, script: &str) -> Result<LoopRun> {
    let received = || -> Result<u64> { Ok(nstat(&topo.client_ns, "TcpInSegs")? + nstat(&topo.server_ns, "TcpInSegs")?) };
    let tracer = match contender {
        Contender::Untraced => None,
        Contender::Netdiag => Some(Tracer::Agent(Agent::start(&dir.0, "interval_s = 1\n"))),
        Contender::Bpftrace => Some(Tracer::Bpftrace(Bpftrace::start(script)?)),
    };
    let pid = tracer.as_ref().map(|t| match t {
        Tracer::Agent(agent) => agent.child.id(),
        Tracer::Bpftrace(bpftrace) => bpftrace.child.id(),
    });
    let program_ns = || -> Result<Option<u64>> { pid.map(|pid| program_time(pid, ProgramsOn::Any).map(|(ns, _)| ns)).transpose() };
    let (before, ns_before) = (received()?, program_ns()?);
    let running = scenario::start_ack_loop_at(topo, Duration::from_secs(LOOP_SECONDS), Speed::Unbounded)?;
    let started = running.started;
    running.finish()?;
    let elapsed = started.elapsed().as_secs_f64();
    let packets = received()? - before;
    let program_ns_per_packet = ns_before.zip(program_ns()?).map(|(b, a)| (a - b) as f64 / packets.max(1) as f64);
    match tracer {
        Some(Tracer::Agent(agent)) => agent.stop(),
        Some(Tracer::Bpftrace(bpftrace)) => {
            bpftrace.finish(0)?;
        }
        None => {}
    }
    // Let the last segments of the loop drain before the next run.
    std::thread::sleep(Duration::from_secs(1));
    Ok(LoopRun { packets_per_s: packets as f64 / elapsed, program_ns_per_packet })
}

enum Tracer {
    Agent(Agent),
    Bpftrace(Bpftrace),
}

/// Per flow, what netdiag's flow programs count: out-of-window drops on skb:kfree_skb and pure
/// ACKs leaving on net:net_dev_queue.
fn bpftrace_loop_script() -> Result<String> {
    let btf = Btf::from_sys_fs()?;
    let reasons = ReasonTable::resolve(&btf, None);
    let numbers: Vec<String> = ["TCP_OLD_SEQUENCE", "TCP_INVALID_SEQUENCE", "TCP_INVALID_END_SEQUENCE", "TCP_RFC7323_PAWS"]
        .iter()
        .filter_map(|r| reasons.number(r))
        .map(|n| format!("args->reason == {n}"))
        .collect();
    ensure!(!numbers.is_empty(), "this kernel has none of the out-of-window drop reasons");
    Ok(format!(
        "tracepoint:skb:kfree_skb /{}/ {{
            $skb = (struct sk_buff *)args->skbaddr;
            $ip = (struct iphdr *)($skb->head + $skb->network_header);
            $tcp = (struct tcphdr *)($skb->head + $skb->transport_header);
            @oow[$ip->saddr, $ip->daddr, $tcp->source, $tcp->dest] = count();
        }}
        tracepoint:net:net_dev_queue {{
            $skb = (struct sk_buff *)args->skbaddr;
            $ip = (struct iphdr *)($skb->head + $skb->network_header);
            $tcp = (struct tcphdr *)($skb->head + $skb->transport_header);
            if ($ip->protocol == 6 && $tcp->ack && !$tcp->syn && !$tcp->fin && !$tcp->rst) {{
                @acks_out[$ip->saddr, $ip->daddr, $tcp->source, $tcp->dest] = count();
            }}
        }}",
        numbers.join(" || ")
    ))
}

/// Spoofed SYNs from `flood_sources` distinct addresses to a closed port, watched as NO_SOCKET
/// drops: netdiag's peak memory, the kernel maps' memory, and what the bounded maps evicted.
fn flood_memory(plan: &Plan) -> Result<Vec<Value>> {
    let topo = FloodTopology::new("benchflood")?;
    let tracer = Diagnose::start(&["--reason", "NO_SOCKET", "--netns", &topo.server_ns])?;
    let pid = tracer.pid();
    let rss = PeakRss::watch(pid);
    let spec = FloodSpec { sources: plan.flood_sources, heavy_every: 64, time_limit: Duration::from_secs(60) };
    let run = syn_flood(&topo, spec)?;
    let map_bytes = map_memory(pid)?;
    let report = tracer.finish()?;
    let peak_kib = rss.stop();
    let stats = &report["probe_stats"];
    eprintln!("bench: flood of {} sources at {:.0} packets/s", run.spoofed_sent, run.packets_per_second());
    Ok(vec![
        json!({
            "measure": format!("memory under a flood of {} distinct peers: netdiag peak RSS (MiB)", run.spoofed_sent),
            "contender": "netdiag",
            "median": round3(peak_kib as f64 / 1024.0),
            "target": "≤ 64 MiB",
        }),
        json!({
            "measure": "  … kernel map memory, all netdiag maps (MiB, bytes_memlock)",
            "contender": "netdiag",
            "median": round3(map_bytes as f64 / (1024.0 * 1024.0)),
            "target": "bounded by configured sizes",
            "peer_map_entries": stats["peer_map_entries"],
            "peer_map_evictions": stats["peer_map_evictions"],
        }),
    ])
}

/// Memory the kernel charges for the maps process `pid` holds.
fn map_memory(pid: u32) -> Result<u64> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let info = std::fs::read_to_string(entry?.path()).unwrap_or_default();
        if let Some(id) = info.lines().find_map(|l| l.strip_prefix("map_id:")) {
            ids.push(id.trim().parse::<u64>()?);
        }
    }
    let out = Command::new("bpftool").args(["map", "show", "--json"]).output().context("run bpftool")?;
    let maps: Value = serde_json::from_slice(&out.stdout).context("bpftool printed no JSON")?;
    Ok(maps
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["id"].as_u64().is_some_and(|id| ids.contains(&id)))
        .filter_map(|m| m["bytes_memlock"].as_u64())
        .sum())
}

fn drop_run(topo: &PawsTopology, contender: Contender, segments: u32, script: &str) -> Result<DropRun> {
    let before = nstat(&topo.server_ns, "TcpExtPAWSEstab")?;
    let mut run = DropRun::default();
    match contender {
        Contender::Untraced => {
            let paws = scenario::paws_established(topo, false, segments)?;
            run.segments_per_s = paws.injected as f64 / paws.injection_time.as_secs_f64();
        }
        Contender::Netdiag => {
            let started = Instant::now();
            let tracer = Diagnose::start(&["--netns", &topo.server_ns])?;
            run.startup_s = Some(started.elapsed().as_secs_f64());
            let (cpu_before, programs_before) = (process_cpu_s(tracer.pid())?, program_time(tracer.pid(), ProgramsOn::Any)?);
            let paws = scenario::paws_established(topo, false, segments)?;
            let wall = paws.injection_time.as_secs_f64();
            run.segments_per_s = paws.injected as f64 / wall;
            let (cpu_after, programs_after) = (process_cpu_s(tracer.pid())?, program_time(tracer.pid(), ProgramsOn::Any)?);
            run.ns_per_run = ns_per_run(tracer.pid())?;
            run.userspace_share = Some((cpu_after - cpu_before) / wall);
            run.program_share = Some((programs_after.0 - programs_before.0) as f64 / 1e9 / wall);
            let report = tracer.finish()?;
            let rejected = nstat(&topo.server_ns, "TcpExtPAWSEstab")? - before;
            let found = findings_for(&report, "paws_rejections", &paws.client_addr.to_string());
            run.exact = Some(rejected == paws.injected && found.len() == 1 && found[0]["count"] == rejected);
            run.lost_events = report["lost_events"].as_u64();
        }
        Contender::Bpftrace => {
            let tracer = Bpftrace::start(script)?;
            let paws = scenario::paws_established(topo, false, segments)?;
            run.segments_per_s = paws.injected as f64 / paws.injection_time.as_secs_f64();
            run.ns_per_run = ns_per_run(tracer.child.id())?;
            let counted = tracer.finish(netdiag::netns::inode_of(&topo.server_path())?)?;
            let rejected = nstat(&topo.server_ns, "TcpExtPAWSEstab")? - before;
            run.exact = Some(counted == rejected && rejected == paws.injected);
        }
    }
    Ok(run)
}

/// What a bpftrace user would write for the same per-peer count: source address, reason and
/// namespace of every PAWS drop, parsed from the packet as netdiag's program does. Reason numbers are this
/// kernel's, resolved by name.
fn bpftrace_paws_script() -> Result<String> {
    let btf = Btf::from_sys_fs()?;
    let reasons = ReasonTable::resolve(&btf, None);
    let numbers: Vec<String> =
        PAWS_REASONS.iter().filter_map(|r| reasons.number(r)).map(|n| format!("args->reason == {n}")).collect();
    ensure!(!numbers.is_empty(), "this kernel has none of the PAWS drop reasons");
    // The receiving socket's namespace where the tracepoint carries it (6.11+): the kernel has
    // often cleared skb->dev by then, as netdiag's own program knows.
    let has_rx_sk = netdiag::tracefs::read_format("skb", "kfree_skb")?.field("rx_sk").is_some();
    let netns = if has_rx_sk { "((struct sock *)args->rx_sk)->__sk_common.skc_net.net->ns.inum" } else { "$skb->dev->nd_net.net->ns.inum" };
    Ok(format!(
        "tracepoint:skb:kfree_skb /{}/ {{
            $skb = (struct sk_buff *)args->skbaddr;
            $ip = (struct iphdr *)($skb->head + $skb->network_header);
            @drops[$ip->saddr, args->reason, {netns}] = count();
        }}",
        numbers.join(" || ")
    ))
}

/// A running bpftrace; its maps are printed when it gets SIGINT.
struct Bpftrace {
    child: Child,
    /// Everything it prints after attaching, once it exits.
    output: std::thread::JoinHandle<String>,
}

impl Bpftrace {
    fn start(script: &str) -> Result<Bpftrace> {
        let mut child = Command::new("bpftrace")
            .args(["-e", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start bpftrace (cargo xtask setup installs it)")?;
        let stdout = child.stdout.take().context("bpftrace stdout")?;
        let (tx, rx) = mpsc::channel();
        let mut reader = BufReader::new(stdout);
        let output = std::thread::spawn(move || {
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line.starts_with("Attaching") {
                    let _ = tx.send(());
                    break;
                }
                line.clear();
            }
            let mut rest = String::new();
            let _ = reader.read_to_string(&mut rest);
            rest
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            bail!("bpftrace did not attach");
        }
        // "Attaching" is printed before the programs are in; give them a moment.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Bpftrace { child, output })
    }

    /// Stops bpftrace and returns the total of its `@drops` map in namespace `netns`.
    fn finish(mut self, netns: u32) -> Result<u64> {
        self.interrupt()?;
        let text = self.output.join().unwrap_or_default();
        // `@drops[40121286, 36, 4026532514]: 100000`
        let in_netns = format!(", {netns}]:");
        Ok(text
            .lines()
            .filter(|l| l.starts_with("@drops[") && l.contains(&in_netns))
            .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<u64>().ok())
            .sum())
    }

    /// SIGINT, again every few seconds while it runs: bpftrace was seen to catch the first and go
    /// on waiting (the bench hung there for minutes). Killed if it ignores them all.
    fn interrupt(&mut self) -> Result<()> {
        const ATTEMPTS: u32 = 3;
        const GRACE: Duration = Duration::from_secs(5);
        for _ in 0..ATTEMPTS {
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + GRACE;
            while Instant::now() < deadline {
                if self.child.try_wait()?.is_some() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.child.kill()?;
        self.child.wait()?;
        bail!("bpftrace ignored {ATTEMPTS} SIGINTs and was killed")
    }
}

/// Run time per run of the programs process `pid` holds on skb:kfree_skb, from the kernel's
/// own statistics (kernel.bpf_stats_enabled=1).
fn ns_per_run(pid: u32) -> Result<Option<f64>> {
    let (time, count) = program_time(pid, ProgramsOn::KfreeSkb)?;
    Ok((count > 0).then(|| time as f64 / count as f64))
}

/// CPU seconds process `pid` has used, all threads, user and system.
fn process_cpu_s(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')').context("no command name in /proc/PID/stat")?.1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks as f64 / per_s)
}

/// Which of a tracer's programs [`program_time`] sums.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ProgramsOn {
    KfreeSkb,
    Any,
}

/// Total run time (ns) and runs of the programs process `pid` holds (on skb:kfree_skb, or all):
/// the process's fds name its program ids, and `bpftool prog show` their names and figures.
fn program_time(pid: u32, on: ProgramsOn) -> Result<(u64, u64)> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let info = std::fs::read_to_string(entry?.path()).unwrap_or_default();
        if let Some(id) = info.lines().find_map(|l| l.strip_prefix("prog_id:")) {
            ids.push(id.trim().parse::<u64>()?);
        }
    }
    let out = Command::new("bpftool").args(["prog", "show", "--json"]).output().context("run bpftool")?;
    let progs: Value = serde_json::from_slice(&out.stdout).context("bpftool printed no JSON")?;
    let (mut time, mut count) = (0u64, 0u64);
    for prog in progs.as_array().into_iter().flatten() {
        let held = prog["id"].as_u64().is_some_and(|id| ids.contains(&id));
        // netdiag's programs there are `on_drop_*`; bpftrace names its own after the probe.
        let on_kfree_skb = prog["name"].as_str().is_some_and(|n| n.starts_with("on_drop") || n.starts_with("tracepoint_skb") || n.starts_with("kfree_skb"));
        if held && (on_kfree_skb || on == ProgramsOn::Any) {
            time += prog["run_time_ns"].as_u64().unwrap_or(0);
            count += prog["run_cnt"].as_u64().unwrap_or(0);
        }
    }
    Ok((time, count))
}

/// Rows `cargo xtask bench` measured in a guest (the per-backend costs), to print with these.
fn read_guest_rows(path: &std::path::Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let rows: Value = serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    rows.as_array().cloned().with_context(|| format!("{} holds no list of rows", path.display()))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    json!({
        "date": humantime_now(),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "loadavg_at_start": loadavg(),
    })
}

fn humantime_now() -> String {
    let out = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

fn print_table(machine: &Value, rows: &[Value]) {
    println!("\nnetdiag bench — {} — kernel {}, {} CPUs ({}), load average {} at start, {} at end", machine["date"].as_str().unwrap_or(""),
        machine["kernel"].as_str().unwrap_or(""), machine["cpus"], machine["cpu"].as_str().unwrap_or(""),
        machine["loadavg_at_start"].as_str().unwrap_or("?"), machine["loadavg_at_end"].as_str().unwrap_or("?"));
    println!("{:<56} {:<16} {:>12} {:>25} {:>9}  target", "measure", "contender", "median", "spread (min … max)", "ratio");
    for row in rows {
        let number = |v: &Value| match v.as_f64() {
            Some(x) if x >= 1000.0 || x.fract() == 0.0 => format!("{x:.0}"),
            Some(x) => format!("{x:.3}"),
            None => "—".into(),
        };
        let spread = if row["min"].is_null() && row["max"].is_null() {
            String::new()
        } else {
            format!("{} … {}", number(&row["min"]), number(&row["max"]))
        };
        // Rows 1–5 compare with no tracer, the guest's per-backend rows with the tracepoint.
        let ratio = row["ratio_to_untraced"].as_f64().or(row["ratio_to_tracepoint"].as_f64());
        let mut extra = String::new();
        if let Some(exact) = row["exact_in_every_run"].as_bool() {
            extra = format!("exact: {}", if exact { "yes" } else { "NO" });
        }
        if let Some(lost) = row["lost_events_total"].as_u64() {
            extra += &format!(", lost events reported: {lost}");
        }
        if let (Some(entries), Some(evicted)) = (row["peer_map_entries"].as_u64(), row["peer_map_evictions"].as_u64()) {
            extra += &format!("peer map {entries} entries, {evicted} evictions counted");
        }
        if let Some(note) = row["note"].as_str() {
            extra += note;
        }
        println!(
            "{:<56} {:<16} {:>12} {:>25} {:>9}  {} {}",
            row["measure"].as_str().unwrap_or(""),
            row["contender"].as_str().unwrap_or(""),
            number(&row["median"]),
            spread,
            ratio.map(|r| format!("{r:.3}")).unwrap_or_default(),
            row["target"].as_str().unwrap_or(""),
            extra,
        );
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
