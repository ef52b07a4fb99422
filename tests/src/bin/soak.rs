//! `cargo xtask soak --minutes N`: `netdiag agent` (release) under mixed incident traffic for N
//! minutes, its resident memory, CPU time and kernel map fill sampled over time. It fails when
//! the agent dies or stops serving, when memory keeps growing after the warm-up third of the run
//! or passes 64 MiB, or when a map holds more than its capacity.
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use clap::Parser;
use netdiag::scenario::{self, PawsTopology};
use netdiag_tests::agent::{Agent, TempDir, value_of};

/// Small maps, so a short soak already fills them and runs on eviction.
const PEER_ENTRIES: u32 = 1024;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const RSS_LIMIT: u64 = 64 << 20;
/// Growth allowed after warm-up: allocator noise, not a leak.
const RSS_SLACK: u64 = 4 << 20;
/// Distinct peer addresses the many-peers scenario may add to the lab over the whole soak: four
/// times the map's capacity already keeps it evicting; far more addresses on one interface only
/// slow the reproduction down (a CI run once timed out a handshake after 7000).
const MAX_NEW_PEERS: u32 = 4 * PEER_ENTRIES;
/// Rounds whose reproduction may fail (a handshake timing out on a loaded machine) before the
/// soak gives up: it watches the agent, and one slow round says nothing about the agent.
const MAX_FAILED_ROUNDS: u32 = 3;
const PEERS_PER_ROUND: u16 = 200;

struct Sample {
    at_s: f64,
    rss: u64,
    cpu_s: f64,
    peer_map: f64,
}

/// `netdiag agent` under mixed incident traffic; fails if its memory grows after warm-up.
#[derive(Parser)]
struct Args {
    /// How long the traffic runs.
    #[arg(long, default_value_t = 1.0)]
    minutes: f64,
}

fn main() -> Result<()> {
    let minutes = Args::parse().minutes;
    ensure!(minutes > 0.0, "--minutes {minutes}: the soak needs a positive time");
    ensure!(unsafe { libc::geteuid() } == 0, "the soak loads eBPF programs and creates namespaces: run it as root");
    let dir = TempDir::new("soak");
    let topo = PawsTopology::new("soak")?;
    let agent = Agent::start(
        &dir.0,
        &format!(
            "interval_s = 1\ntop_peers = 10\nseries_expiry_s = 30\n[maps]\npeer_entries = {PEER_ENTRIES}\n\
             [filters]\nnetns = [\"{}\"]\n",
            topo.server_ns
        ),
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(minutes * 60.0);
    let mut samples = Vec::new();
    let mut next_sample = started;
    let mut round: u32 = 0;
    let mut failed_rounds: u32 = 0;
    println!("{:>7} {:>10} {:>8} {:>10}", "time s", "RSS KiB", "CPU s", "peer map");
    while Instant::now() < deadline {
        // Mixed traffic: rejections on live IPv4 and IPv6 connections, new peers by the hundred
        // (until the lab has added its share), and ordinary connections.
        let new_peers = round * u32::from(PEERS_PER_ROUND);
        let traffic = scenario::paws_established(&topo, round % 2 == 1, 200)
            .and_then(|_| {
                if new_peers < MAX_NEW_PEERS {
                    scenario::paws_tsecr_from_many(&topo, new_peers as u16, PEERS_PER_ROUND)?;
                }
                Ok(())
            })
            .and_then(|()| scenario::innocent_traffic(&topo, 5));
        if let Err(err) = traffic {
            failed_rounds += 1;
            eprintln!("soak: round {round}'s traffic failed ({failed_rounds} so far): {err:#}");
            ensure!(failed_rounds <= MAX_FAILED_ROUNDS, "more than {MAX_FAILED_ROUNDS} rounds of traffic failed");
        }
        round += 1;
        if Instant::now() >= next_sample {
            let sample = sample(&agent, started);
            println!("{:>7.0} {:>10} {:>8.2} {:>10}", sample.at_s, sample.rss >> 10, sample.cpu_s, sample.peer_map);
            samples.push(sample);
            next_sample += SAMPLE_EVERY;
        }
    }
    let last = sample(&agent, started);
    println!("{:>7.0} {:>10} {:>8.2} {:>10}", last.at_s, last.rss >> 10, last.cpu_s, last.peer_map);
    samples.push(last);
    agent.stop();

    let warm = &samples[samples.len() / 3];
    let peak = samples.iter().map(|s| s.rss).max().unwrap_or(0);
    let fullest = samples.iter().map(|s| s.peer_map).fold(0.0, f64::max);
    let cpu_share = samples.last().map_or(0.0, |s| s.cpu_s / s.at_s);
    println!(
        "\nsoak: {round} rounds ({failed_rounds} with failed traffic) in {:.0} s; RSS {} KiB after warm-up, peak {} KiB (limit {} KiB); \
         agent CPU {:.1} % of one core; peer map at most {fullest} of {PEER_ENTRIES}",
        started.elapsed().as_secs_f64(),
        warm.rss >> 10,
        peak >> 10,
        RSS_LIMIT >> 10,
        cpu_share * 100.0
    );
    ensure!(peak <= RSS_LIMIT, "the agent's memory passed {} MiB", RSS_LIMIT >> 20);
    ensure!(peak <= warm.rss + RSS_SLACK, "the agent's memory kept growing after warm-up");
    ensure!(fullest <= f64::from(PEER_ENTRIES), "a kernel map held more than its capacity");
    println!("soak: 1 passed, 0 failed");
    Ok(())
}

/// The agent's resident memory and CPU time from /proc, and its per-peer map fill from /metrics
/// (reading it also proves the agent still serves).
fn sample(agent: &Agent, started: Instant) -> Sample {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", agent.child.id())).unwrap_or_default();
    // Fields after the command name, which is in parentheses: utime and stime are 14th and 15th.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |t| t.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Sample {
        at_s: started.elapsed().as_secs_f64(),
        rss: agent.rss_bytes(),
        cpu_s: ticks / hz,
        peer_map: value_of(&agent.metrics(), "netdiag_map_entries", &[("map", "PEER_DROPS")]).unwrap_or(0.0),
    }
}
