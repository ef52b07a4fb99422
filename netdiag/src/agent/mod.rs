//! `netdiag agent`: the diagnose session's programs and detectors, running until SIGTERM or
//! SIGINT, with what they find served as Prometheus metrics and written as JSON lines.
//!
//! Every `interval_s` the agent builds the same report diagnose prints at its end
//! ([`session::build_report`]), turns its findings into rises and open/update/close events
//! ([`findings`]), adds the rises to bounded per-peer counters ([`metrics`]) and writes the events
//! ([`jsonlines`]). Memory stays bounded: the kernel maps are fixed-size LRU maps, and every
//! userspace table is pruned to what those maps still hold or to the top peers.
pub mod arming;
pub mod config;
pub mod findings;
pub mod jsonlines;
pub mod metrics;

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header::CONTENT_TYPE, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use netdiag_common::{PeerAddrKey, PeerKey, PeerStats};
use prometheus_client::registry::Registry;
use tokio::{
    net::{TcpListener, TcpStream},
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use self::{
    config::Config,
    findings::{Change, FindingKey, Tracker},
    jsonlines::JsonLines,
    metrics::{Exported, MapStat, ProgramStat},
};
use crate::{
    aggregate::{Aggregator, PeerId, flows::FlowMonitor},
    counters::CounterWatch,
    error::usage,
    events::{self, ip_from},
    hooks::{self, Probes},
    netns,
    session::{self, ReportFilter},
    workload::Workloads,
};

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// Serve /metrics here (overrides the config file; default 127.0.0.1:9465, loopback only).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Append one JSON line per finding change to this file (created 0600), or `-` for stdout.
    #[arg(long, value_name = "PATH|-")]
    pub json_lines: Option<String>,
    /// TOML config: listen, top_peers, map sizes, detectors, peer, netns, container and pod filters (see the README).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Printed on stderr once the programs are attached and /metrics is served.
pub const READY_LINE: &str = "netdiag agent: serving";
/// Slow or idle clients cannot hold a connection open for ever.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(args: AgentArgs) -> Result<i32> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if args.json_lines.is_some() {
        config.json_lines = args.json_lines;
    }
    // First: without privileges, one line saying so, not an error from whatever is tried next.
    hooks::privileges::check()?;
    // Registered before anything attaches, so a stop at any moment detaches cleanly.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut json_lines = config.json_lines.as_deref().map(JsonLines::open).transpose()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| usage(format!("cannot listen on {}: {e}", config.listen)))?;
    // Held for the agent's life: the kernel accounts program run time while this fd is open.
    let _bpf_stats = if config.bpf_stats {
        Some(aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| anyhow::anyhow!("enable BPF stats: {e}"))?)
    } else {
        None
    };

    let started = Instant::now();
    let mut watch_counters = CounterWatch::start()?;
    let hook_options =
        hooks::Options { peer_entries: config.peer_entries, ring_bytes: config.ring_bytes, ..hooks::Options::default() };
    let mut probes = Probes::attach(&hook_options)?;
    let arming = match config.deep_hooks {
        config::DeepHooks::OnDemand => Some(arming::Arming::start(&mut probes, config.deep_quiet)?),
        config::DeepHooks::Always => None,
    };
    // Attached and listening: what is left to do needs far less than root.
    hooks::privileges::keep_only(hooks::privileges::AFTER_ATTACH)?;
    let ring = probes.take_events()?;
    let aggregator = Arc::new(Mutex::new(Aggregator::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let pump = tokio::spawn(events::pump(ring, aggregator.clone(), stop_rx));

    let exported = Arc::new(Mutex::new(Exported::new(config.top_peers, config.series_expiry, &config.detectors)));
    exported.lock().unwrap_or_else(|e| e.into_inner()).hooks = probes.hooks.clone();
    let registry = Arc::new(metrics::registry(exported.clone()));
    let active: Vec<String> = probes
        .hooks
        .iter()
        .filter(|h| h.active)
        .map(|h| format!("{} via {}{}", h.name, h.backend, if h.armed { "" } else { " on demand" }))
        .collect();
    eprintln!("{READY_LINE} http://{}/metrics ({}); SIGTERM or Ctrl-C to stop", listener.local_addr()?, active.join(", "));

    let mut agent = Agent {
        config: &config,
        flows: FlowMonitor::new(&probes.hooks),
        probes: &mut probes,
        arming,
        aggregator: &aggregator,
        watch_counters: &mut watch_counters,
        tracker: Tracker::new(config.close_after, config.peer_entries as usize),
        peer_map: KeyWatch::default(),
        dupacks: HashMap::new(),
        exported: &exported,
        // After keep_only: capabilities are per thread, and the watcher's must be the reduced ones.
        workloads: Workloads::watch(),
        started,
    };
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => match agent.cycle() {
                Ok(events) => {
                    if let Some(out) = &mut json_lines && let Err(e) = out.write(&events) {
                        eprintln!("netdiag agent: writing JSON lines: {e:#}");
                    }
                }
                Err(e) => eprintln!("netdiag agent: cycle failed: {e:#}"),
            },
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream, registry.clone()));
                }
                Err(e) => eprintln!("netdiag agent: accept: {e}"),
            },
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    let _ = stop_tx.send(true);
    pump.await??;
    drop(probes);
    eprintln!("netdiag agent: stopped; every program detached");
    Ok(0)
}

/// What one cycle reads and updates.
struct Agent<'a> {
    config: &'a Config,
    probes: &'a mut Probes,
    /// The deep layer's state; `None` when `deep_hooks = "always"`.
    arming: Option<arming::Arming>,
    aggregator: &'a Mutex<Aggregator>,
    watch_counters: &'a mut CounterWatch,
    tracker: Tracker,
    peer_map: KeyWatch,
    dupacks: HashMap<&'static str, Totals>,
    exported: &'a Mutex<Exported>,
    /// The ACK-loop detector, fed the kernel's per-flow counts every cycle.
    flows: FlowMonitor,
    /// Who is behind each namespace, rescanned off this thread when a new one shows up.
    workloads: Workloads,
    started: Instant,
}

impl Agent<'_> {
    /// Rebuilds the findings and updates what /metrics shows; returns the JSON-line events.
    fn cycle(&mut self) -> Result<Vec<findings::Event>> {
        let filter = ReportFilter { peers: self.config.peers.clone(), port: None, netns: self.selected_namespaces()? };
        self.flows.poll(self.probes)?;
        let report = {
            let aggregator = self.aggregator.lock().unwrap_or_else(|e| e.into_inner());
            let table = self.workloads.table();
            session::build_report(self.probes, &aggregator, &self.flows, self.watch_counters, &filter, &table, self.started)?
        };
        if let Some(arming) = &mut self.arming {
            for change in arming.step(self.probes, &report.counters, Instant::now())? {
                match change {
                    arming::Change::Armed(hook, why) => {
                        eprintln!("netdiag agent: {} hooks armed: {why} seen", hook.name())
                    }
                    arming::Change::Disarmed(hook, quiet) => {
                        eprintln!("netdiag agent: {} hooks disarmed after {:.0} s quiet", hook.name(), quiet.as_secs_f64())
                    }
                }
            }
        }
        let workload_labels = metrics::WorkloadLabels::of_findings(&report.findings);
        // A kind missing from config::DETECTORS (a detector newer than that list) is exported
        // rather than silently dropped.
        let findings = report
            .findings
            .into_iter()
            .filter(|f| self.config.detectors.iter().any(|d| d == f.kind) || !config::DETECTORS.contains(&f.kind))
            .collect();
        let now = Instant::now();
        let step = self.tracker.step(findings, now);

        let mut rises = step.rises;
        rises.extend(self.dupack_rises()?);
        let live = self.peer_map.read(self.probes.peer_drops()?.into_iter().map(|(key, _)| key));
        let samples = self.forget_what_the_kernel_forgot(&live);
        let programs = self
            .probes
            .program_infos()
            .into_iter()
            .map(|(name, info)| ProgramStat { name, runs: info.run_count(), run_time: info.run_time() })
            .collect();

        let mut exported = self.exported.lock().unwrap_or_else(|e| e.into_inner());
        exported.workloads = workload_labels;
        exported.record(&rises, now);
        for count in exported.active.values_mut() {
            *count = 0;
        }
        for (kind, open) in self.tracker.open_by_kind() {
            exported.active.insert(kind.to_string(), open);
        }
        for event in step.events.iter().filter(|e| e.change == Change::Open) {
            *exported.opened.entry(event.finding.kind).or_default() += 1;
        }
        exported.probe = report.probe_stats;
        exported.maps = vec![MapStat {
            name: "PEER_DROPS",
            entries: live.len() as u64,
            capacity: self.config.peer_entries.into(),
            evictions: self.peer_map.evictions,
        }];
        exported.programs = programs;
        exported.hooks = self.probes.hooks.clone();
        exported.deep = self
            .arming
            .iter()
            .flat_map(|a| &a.states)
            .map(|d| metrics::DeepStat { hook: d.hook.name(), armed: d.armed, arms: d.arms })
            .collect();
        exported.bpf_stats_enabled = self.config.bpf_stats || read_bpf_stats_sysctl();
        exported.tables = vec![
            ("findings", self.tracker.remembered() as u64),
            ("samples", samples as u64),
            ("peer_scores", exported.scored_peers() as u64),
            ("per_peer_series", exported.per_peer_series() as u64),
        ];
        exported.cycles += 1;
        Ok(step.events)
    }

    /// Rises of the duplicate-ACK maps, as families `dupacks_sent` and `dupacks_suppressed`
    /// (read only while their hooks are attached).
    fn dupack_rises(&mut self) -> Result<Vec<(FindingKey, u64)>> {
        let attached = |hook: &str| self.probes.hooks.iter().any(|h| h.name == hook && h.active);
        let mut sources = Vec::new();
        if attached("dupack_sent") {
            sources.push(("dupacks_sent", self.probes.dupack_counts()?));
        }
        if attached("oow_limiter") {
            sources.push(("dupacks_suppressed", self.probes.oow_suppressed()?));
        }
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let known = netns::named().unwrap_or_default();
        let selected = self.selected_namespaces()?;
        let mut rises = Vec::new();
        for (family, counts) in sources {
            let last = self.dupacks.entry(family).or_default();
            for (key, rise) in last.rises(counts) {
                let (Some(addr), true) = (ip_from(key.family, &key.addr), keeps(self.config, &key, &selected)) else {
                    continue;
                };
                let netns = netns::display_name(key.netns, &known);
                rises.push((FindingKey { kind: family, variant: "", peer: addr.to_string(), netns }, rise));
            }
        }
        Ok(rises)
    }

    /// Inodes of the namespaces the config selects, by name, container or pod; empty when it
    /// selects none (everything is kept). Looked up each cycle, the containers and pods in the
    /// workload table the watcher keeps, so one that starts later is covered once it runs and
    /// one that stopped no longer is.
    fn selected_namespaces(&self) -> Result<Vec<u32>> {
        let c = self.config;
        if c.netns.is_empty() && c.containers.is_empty() && c.pods.is_empty() {
            return Ok(Vec::new());
        }
        let mut inodes: Vec<u32> = if c.netns.is_empty() {
            Vec::new()
        } else {
            netns::named()?.iter().filter(|ns| c.netns.contains(&ns.name)).map(|ns| ns.inode).collect()
        };
        inodes.extend(self.workloads.table().namespaces_of(|w| {
            c.containers.iter().any(|text| w.is_container(text)) || c.pods.iter().any(|(ns, name)| w.is_pod(ns, name))
        }));
        inodes.sort_unstable();
        inodes.dedup();
        // None exists yet: inode 0 is no namespace, so nothing matches (an empty list would mean all).
        Ok(if inodes.is_empty() { vec![0] } else { inodes })
    }

    /// Samples and held namespaces of peers no longer in the kernel map are dropped, so
    /// userspace never holds more than the fixed-size map does.
    /// Returns how many peers' samples are kept.
    fn forget_what_the_kernel_forgot(&mut self, live: &HashSet<PeerKey>) -> usize {
        let ids: HashSet<PeerId> =
            live.iter().filter_map(|k| Some(PeerId { addr: ip_from(k.family, &k.addr)?, netns: k.netns })).collect();
        let mut aggregator = self.aggregator.lock().unwrap_or_else(|e| e.into_inner());
        aggregator.peers.retain(|id, _| ids.contains(id));
        let namespaces: Vec<u32> = ids.iter().map(|id| id.netns).collect();
        self.watch_counters.release_except(&namespaces);
        aggregator.peers.len()
    }
}

/// The config's peer filter and the namespaces it selects (all, if none), for map keys
/// outside the report.
fn keeps(config: &Config, key: &PeerAddrKey, selected: &[u32]) -> bool {
    let peer_ok = config.peers.is_empty()
        || ip_from(key.family, &key.addr).is_some_and(|a| config.peers.iter().any(|f| f.contains(a)));
    peer_ok && (selected.is_empty() || selected.contains(&key.netns))
}

/// A kernel map's totals at the last read, to turn them into rises. Only keys still in the map
/// are kept; a total below the last one was evicted and counts afresh.
#[derive(Default)]
struct Totals {
    last: HashMap<PeerAddrKey, u64>,
}

impl Totals {
    fn rises(&mut self, now: Vec<(PeerAddrKey, PeerStats)>) -> Vec<(PeerAddrKey, u64)> {
        let mut rises = Vec::new();
        let mut next = HashMap::with_capacity(now.len());
        for (key, stats) in now {
            let before = self.last.get(&key).copied().unwrap_or(0);
            let rise = stats.count.checked_sub(before).unwrap_or(stats.count);
            if rise > 0 {
                rises.push((key, rise));
            }
            next.insert(key, stats.count);
        }
        self.last = next;
        rises
    }
}

/// The keys of a kernel LRU map between reads: the agent never deletes, so a key that vanished
/// was evicted.
#[derive(Default)]
struct KeyWatch {
    previous: HashSet<PeerKey>,
    evictions: u64,
}

impl KeyWatch {
    fn read(&mut self, keys: impl Iterator<Item = PeerKey>) -> HashSet<PeerKey> {
        let now: HashSet<PeerKey> = keys.collect();
        self.evictions += self.previous.difference(&now).count() as u64;
        self.previous = now.clone();
        now
    }
}

fn read_bpf_stats_sysctl() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|s| s.trim() == "1")
}

async fn serve(stream: TcpStream, registry: Arc<Registry>) {
    let service = service_fn(move |request: Request<Incoming>| {
        let response = respond(&request, &registry);
        async move { Ok::<_, Infallible>(response) }
    });
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

fn respond(request: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    };
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => match metrics::render(registry) {
            Ok(text) => reply(StatusCode::OK, metrics::CONTENT_TYPE, text),
            Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "encoding failed\n".into()),
        },
        (&Method::GET, "/") => reply(StatusCode::OK, "text/plain", "netdiag agent: metrics at /metrics\n".into()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found; metrics are at /metrics\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> PeerKey {
        PeerKey { local_port: port, ..PeerKey::default() }
    }

    #[test]
    fn map_totals_become_rises_and_an_evicted_key_counts_afresh() {
        let peer = |n: u8| PeerAddrKey { netns: n.into(), ..PeerAddrKey::default() };
        let stats = |count: u64| PeerStats { count, ..PeerStats::default() };
        let mut totals = Totals::default();
        assert_eq!(totals.rises(vec![(peer(1), stats(5)), (peer(2), stats(1))]), [(peer(1), 5), (peer(2), 1)]);
        assert_eq!(totals.rises(vec![(peer(1), stats(7)), (peer(2), stats(1))]), [(peer(1), 2)]);
        assert_eq!(totals.rises(vec![(peer(1), stats(3))]), [(peer(1), 3)]);
        assert_eq!(totals.last.len(), 1, "keys gone from the map are forgotten");
    }

    #[test]
    fn map_keys_are_kept_in_the_selected_namespaces_or_everywhere_when_none_are() {
        let config = Config::default();
        let in_netns = |netns: u32| PeerAddrKey { netns, ..PeerAddrKey::default() };
        assert!(keeps(&config, &in_netns(7), &[]));
        assert!(keeps(&config, &in_netns(7), &[5, 7]));
        assert!(!keeps(&config, &in_netns(7), &[5]));
        assert!(!keeps(&config, &in_netns(7), &[0]), "selected, but none exists yet");
    }

    #[test]
    fn keys_that_vanish_between_reads_count_as_evictions() {
        let mut watch = KeyWatch::default();
        assert_eq!(watch.read([key(1), key(2), key(3)].into_iter()).len(), 3);
        watch.read([key(2), key(3), key(4)].into_iter());
        watch.read([key(4), key(5)].into_iter());
        assert_eq!(watch.evictions, 3);
    }
}
