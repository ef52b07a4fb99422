//! What /metrics shows, in the Prometheus text format (prometheus-client's encoder).
//!
//! Each finding kind becomes a counter family `netdiag_<kind>_total{variant,peer,netns,workload}`,
//! generated from the findings, so a new detector's findings are exported with no change here.
//! Cardinality is bounded: per family, only the `top_peers` most active (peer, namespace) pairs
//! (by a rate that halves every minute) have series of their own; every other rise goes to
//! `peer="other",netns="other"`. A per-peer series is removed once its peer has been quiet for
//! `series_expiry` or has been pushed out of the top by busier peers. Each rise lands in exactly
//! one series, so `sum(rate(...))` over a family is the exact rate. `workload` names the
//! container or pod behind the namespace (`container/web`, `pod/shop/web-0`, `netns/srv`,
//! `host`): one per namespace, so it adds no series; `other` for the aggregate.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::{Registry, Unit},
};

use super::findings::FindingKey;
use crate::hooks::{HookStatus, ProbeStats};

/// The activity score of a peer halves over this time without rises.
const SCORE_HALF_LIFE: Duration = Duration::from_secs(60);
/// A peer without a series whose score fell below this is forgotten.
const SCORE_FLOOR: f64 = 0.01;
/// Most peers scored per family; under a flood of peers the least active are forgotten.
const MAX_SCORED: usize = 4096;
pub const OTHER: &str = "other";

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesKey {
    variant: &'static str,
    peer: String,
    netns: String,
}

#[derive(Clone, Debug)]
struct Named {
    value: u64,
    last_rise: Instant,
    /// The namespace's workload label as of the last rise.
    workload: String,
}

/// One finding kind's counters: the top peers' own series and the `other` aggregate.
#[derive(Debug, Default)]
struct PeerSeries {
    named: HashMap<SeriesKey, Named>,
    /// By variant.
    other: BTreeMap<&'static str, u64>,
    /// Decayed rises per (peer, netns), for ranking.
    scores: HashMap<(String, String), f64>,
}

impl PeerSeries {
    fn record(
        &mut self,
        rises: &[(&FindingKey, u64)],
        now: Instant,
        since_last: Duration,
        top: usize,
        expiry: Duration,
        workloads: &WorkloadLabels,
    ) {
        let decay = 0.5f64.powf(since_last.as_secs_f64() / SCORE_HALF_LIFE.as_secs_f64());
        for score in self.scores.values_mut() {
            *score *= decay;
        }
        for (key, rise) in rises {
            *self.scores.entry((key.peer.clone(), key.netns.clone())).or_default() += *rise as f64;
        }
        let mut ranked: Vec<(&(String, String), f64)> = self.scores.iter().map(|(p, s)| (p, *s)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let leaders: HashSet<(String, String)> = ranked.into_iter().take(top).map(|(p, _)| p.clone()).collect();
        self.named.retain(|k, s| {
            leaders.contains(&(k.peer.clone(), k.netns.clone())) && now.duration_since(s.last_rise) < expiry
        });
        for (key, rise) in rises {
            if leaders.contains(&(key.peer.clone(), key.netns.clone())) {
                let series = SeriesKey { variant: key.variant, peer: key.peer.clone(), netns: key.netns.clone() };
                let workload = workloads.of(&key.peer, &key.netns);
                let named = self.named.entry(series).or_insert(Named { value: 0, last_rise: now, workload: String::new() });
                named.value += rise;
                named.last_rise = now;
                named.workload = workload;
            } else {
                *self.other.entry(key.variant).or_default() += rise;
            }
        }
        let with_series: HashSet<(&str, &str)> = self.named.keys().map(|k| (k.peer.as_str(), k.netns.as_str())).collect();
        self.scores.retain(|(peer, netns), score| *score >= SCORE_FLOOR || with_series.contains(&(peer.as_str(), netns.as_str())));
        if self.scores.len() > MAX_SCORED {
            let mut by_score: Vec<((String, String), f64)> = self.scores.drain().collect();
            by_score.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            by_score.truncate(MAX_SCORED);
            self.scores = by_score.into_iter().collect();
        }
    }

    fn series(&self) -> Vec<(Vec<(&'static str, String)>, u64)> {
        let mut out: Vec<_> = self
            .named
            .iter()
            .map(|(k, s)| (labels(k.variant, &k.peer, &k.netns, &s.workload), s.value))
            .collect();
        out.extend(self.other.iter().map(|(variant, n)| (labels(variant, OTHER, OTHER, OTHER), *n)));
        out.sort();
        out
    }
}

/// A family without variants (the duplicate-ACK counters) has no `variant` label.
fn labels(variant: &'static str, peer: &str, netns: &str, workload: &str) -> Vec<(&'static str, String)> {
    let mut labels = vec![
        ("variant", variant.to_string()),
        ("peer", peer.to_string()),
        ("netns", netns.to_string()),
        ("workload", workload.to_string()),
    ];
    if variant.is_empty() {
        labels.remove(0);
    }
    labels
}

/// Workload labels from this cycle's findings. A finding's workload may be the container owning
/// its socket, and two containers can share a namespace, so a peer's series takes the label of
/// the peer's own findings there before any finding's in the namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadLabels {
    /// By (peer, namespace name).
    pub by_peer: HashMap<(String, String), String>,
    /// By namespace name.
    pub by_netns: HashMap<String, String>,
}

impl WorkloadLabels {
    pub fn of_findings(findings: &[crate::verdict::Finding]) -> WorkloadLabels {
        let mut labels = WorkloadLabels::default();
        for f in findings {
            if let Some(workload) = &f.workload {
                labels.by_peer.insert((f.peer.clone(), f.netns.clone()), workload.label());
                labels.by_netns.insert(f.netns.clone(), workload.label());
            }
        }
        labels
    }

    /// The label for `peer`'s series in `netns`: as the findings named it, else the namespace.
    fn of(&self, peer: &str, netns: &str) -> String {
        match self.by_peer.get(&(peer.to_string(), netns.to_string())).or_else(|| self.by_netns.get(netns)) {
            Some(label) => label.clone(),
            None if netns == "root" => "host".to_string(),
            None => format!("netns/{netns}"),
        }
    }
}

/// One kernel map: how full, how big, and how many entries were seen to vanish (LRU evictions:
/// the agent never deletes entries; one inserted and evicted between two reads is not seen).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MapStat {
    pub name: &'static str,
    pub entries: u64,
    pub capacity: u64,
    pub evictions: u64,
}

/// The kernel's run accounting of one program (only while bpf_stats is on).
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramStat {
    pub name: String,
    pub runs: u64,
    pub run_time: Duration,
}

/// A deep hook's state, as exported.
#[derive(Debug, Clone)]
pub struct DeepStat {
    pub hook: &'static str,
    pub armed: bool,
    pub arms: u64,
}

/// Everything /metrics shows, updated each cycle.
#[derive(Debug)]
pub struct Exported {
    families: BTreeMap<&'static str, PeerSeries>,
    /// Open findings per kind; every enabled kind is shown, 0 when none is open.
    pub active: BTreeMap<String, usize>,
    pub opened: BTreeMap<&'static str, u64>,
    pub probe: ProbeStats,
    pub maps: Vec<MapStat>,
    pub programs: Vec<ProgramStat>,
    pub bpf_stats_enabled: bool,
    pub hooks: Vec<HookStatus>,
    /// The deep layer's hooks, armed on demand.
    pub deep: Vec<DeepStat>,
    pub cycles: u64,
    /// Entries of the agent's own tables that grow with peers, to show they stay bounded.
    pub tables: Vec<(&'static str, u64)>,
    /// Workload labels from this cycle's findings.
    pub workloads: WorkloadLabels,
    top_peers: usize,
    series_expiry: Duration,
    last_record: Option<Instant>,
}

impl Exported {
    pub fn new(top_peers: usize, series_expiry: Duration, kinds: &[String]) -> Exported {
        Exported {
            families: BTreeMap::new(),
            active: kinds.iter().map(|k| (k.clone(), 0)).collect(),
            opened: BTreeMap::new(),
            probe: ProbeStats::default(),
            maps: Vec::new(),
            programs: Vec::new(),
            bpf_stats_enabled: false,
            hooks: Vec::new(),
            deep: Vec::new(),
            cycles: 0,
            tables: Vec::new(),
            workloads: WorkloadLabels::default(),
            top_peers,
            series_expiry,
            last_record: None,
        }
    }

    /// Adds one cycle's rises to the per-kind families.
    pub fn record(&mut self, rises: &[(FindingKey, u64)], now: Instant) {
        let since_last = self.last_record.map_or(Duration::ZERO, |t| now.duration_since(t));
        self.last_record = Some(now);
        let mut by_kind: BTreeMap<&'static str, Vec<(&FindingKey, u64)>> = BTreeMap::new();
        for (key, rise) in rises {
            by_kind.entry(key.kind).or_default().push((key, *rise));
        }
        for kind in by_kind.keys() {
            self.families.entry(kind).or_default();
        }
        for (kind, family) in &mut self.families {
            let rises = by_kind.get(kind).map(Vec::as_slice).unwrap_or_default();
            family.record(rises, now, since_last, self.top_peers, self.series_expiry, &self.workloads);
        }
    }

    /// Per-peer series across all families (for the cardinality bound).
    pub fn per_peer_series(&self) -> usize {
        self.families.values().map(|f| f.named.len()).sum()
    }

    /// Peers scored for ranking across all families.
    pub fn scored_peers(&self) -> usize {
        self.families.values().map(|f| f.scores.len()).sum()
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (kind, family) in &self.families {
            let name = format!("netdiag_{kind}");
            let help = family_help(kind);
            let mut metric = encoder.encode_descriptor(&name, &help, None, prometheus_client::metrics::MetricType::Counter)?;
            for (labels, value) in family.series() {
                ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
            }
        }
        let active: Vec<(Vec<(&str, String)>, u64)> =
            self.active.iter().map(|(kind, n)| (vec![("kind", kind.clone())], *n as u64)).collect();
        gauges(encoder, "netdiag_findings_active", "Findings open now (rising within finding_close_after_s), by kind.", None, &active)?;
        let opened: Vec<(Vec<(&str, String)>, u64)> =
            self.opened.iter().map(|(kind, n)| (vec![("kind", kind.to_string())], *n)).collect();
        counters(encoder, "netdiag_findings_opened", "Findings opened since the agent started, by kind.", None, &opened)?;

        let none = Vec::<(&str, String)>::new;
        counters(encoder, "netdiag_ring_lost_events", "Per-flow samples the kernel could not queue (ring buffer full); counts stay exact.", None, &[(none(), self.probe.ring_lost)])?;
        counters(encoder, "netdiag_unparsed_packets", "Packets with a watched drop reason whose headers could not be parsed.", None, &[(none(), self.probe.unparsed)])?;
        counters(encoder, "netdiag_peer_map_insert_failures", "Per-peer map inserts the kernel refused.", None, &[(none(), self.probe.peer_map_full)])?;
        let map = |f: fn(&MapStat) -> u64| -> Vec<(Vec<(&str, String)>, u64)> {
            self.maps.iter().map(|m| (vec![("map", m.name.to_string())], f(m))).collect()
        };
        gauges(encoder, "netdiag_map_entries", "Entries in a kernel per-peer map.", None, &map(|m| m.entries))?;
        gauges(encoder, "netdiag_map_capacity_entries", "Capacity of a kernel per-peer map (least recently updated entries are evicted beyond it).", None, &map(|m| m.capacity))?;
        counters(encoder, "netdiag_map_evictions", "Entries seen to vanish from a kernel per-peer map between two reads (LRU evictions).", None, &map(|m| m.evictions))?;

        gauges(encoder, "netdiag_bpf_stats_enabled", "1 while the kernel accounts BPF program run time (kernel.bpf_stats_enabled or bpf_stats = true).", None, &[(none(), self.bpf_stats_enabled as u64)])?;
        if self.bpf_stats_enabled {
            let runs: Vec<_> = self.programs.iter().map(|p| (vec![("program", p.name.clone())], p.runs)).collect();
            counters(encoder, "netdiag_bpf_program_runs", "Runs of a netdiag kernel program, by the kernel's accounting.", None, &runs)?;
            let mut metric = encoder.encode_descriptor(
                "netdiag_bpf_program_run_time",
                "Time spent in a netdiag kernel program, by the kernel's accounting.",
                Some(&Unit::Seconds),
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for p in &self.programs {
                let labels = vec![("program", p.name.clone())];
                ConstCounter::new(p.run_time.as_secs_f64()).encode(metric.encode_family(&labels)?)?;
            }
        }
        let hooks: Vec<_> = self
            .hooks
            .iter()
            .map(|h| (vec![("hook", h.name.clone()), ("backend", h.backend.clone())], h.active as u64))
            .collect();
        gauges(encoder, "netdiag_hook_active", "1 if the logical hook is attached, by the backend serving it.", None, &hooks)?;
        let armed: Vec<_> = self.deep.iter().map(|d| (vec![("hook", d.hook.to_string())], d.armed as u64)).collect();
        gauges(encoder, "netdiag_deep_hook_armed", "1 while a per-packet deep hook (receive, transmit) is attached on demand.", None, &armed)?;
        let arms: Vec<_> = self.deep.iter().map(|d| (vec![("hook", d.hook.to_string())], d.arms)).collect();
        counters(encoder, "netdiag_deep_hook_arms", "Times a deep hook was armed by an incident.", None, &arms)?;
        let tables: Vec<_> = self.tables.iter().map(|(t, n)| (vec![("table", t.to_string())], *n)).collect();
        gauges(encoder, "netdiag_agent_table_entries", "Entries of the agent's own per-peer tables (bounded by the kernel map size or top_peers).", None, &tables)?;
        counters(encoder, "netdiag_agent_cycles", "Cycles run: kernel maps read and findings rebuilt.", None, &[(none(), self.cycles)])?;

        if let Some(process) = ProcessStats::read() {
            let mut rss = encoder.encode_descriptor(
                "netdiag_process_resident_memory",
                "Resident memory of the agent process.",
                Some(&Unit::Bytes),
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            ConstGauge::new(process.rss_bytes as i64).encode(rss.encode_family(&none())?)?;
            let mut cpu = encoder.encode_descriptor(
                "netdiag_process_cpu",
                "User and system CPU time of the agent process.",
                Some(&Unit::Seconds),
                prometheus_client::metrics::MetricType::Counter,
            )?;
            ConstCounter::new(process.cpu_seconds).encode(cpu.encode_family(&none())?)?;
        }
        Ok(())
    }
}

fn family_help(kind: &str) -> String {
    let raw = |what: &str| format!("{what}, by peer and namespace; only the most active peers have own series, the rest are peer=\"other\".");
    match kind {
        "dupacks_sent" => return raw("Duplicate ACKs this host sent (dupack_sent hook)"),
        "dupacks_suppressed" => return raw("Answers to out-of-window segments the kernel's rate limiter suppressed (oow_limiter hook)"),
        _ => {}
    }
    let what = match kind {
        "paws_rejections" => "Segments the kernel dropped in its PAWS (RFC 7323 timestamp) checks",
        "unanswered_syns" => "SYNs that reached a listener and got no answer",
        "ack_loop" => "Duplicate ACKs exchanged in ACK loops",
        "out_of_window_flood" => "Out-of-window segments received",
        _ => "Events counted by this finding",
    };
    format!(
        "{what} (`netdiag explain {kind}`), by variant, peer and namespace; only the most active peers have own series, the rest are peer=\"other\"."
    )
}

fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    values: &[(Vec<(&str, String)>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, unit, prometheus_client::metrics::MetricType::Counter)?;
    for (labels, value) in values {
        ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    values: &[(Vec<(&str, String)>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, unit, prometheus_client::metrics::MetricType::Gauge)?;
    for (labels, value) in values {
        ConstGauge::new(*value as i64).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

/// The agent's own footprint, from /proc/self.
struct ProcessStats {
    rss_bytes: u64,
    cpu_seconds: f64,
}

impl ProcessStats {
    fn read() -> Option<ProcessStats> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // SAFETY: sysconf has no preconditions.
        let (page, ticks) = unsafe { (libc::sysconf(libc::_SC_PAGESIZE), libc::sysconf(libc::_SC_CLK_TCK)) };
        let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // Fields after the command name (which may hold spaces), from field 3 on: utime and
        // stime are fields 14 and 15.
        let after_comm = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(ProcessStats { rss_bytes: resident * page as u64, cpu_seconds: (utime + stime) as f64 / ticks as f64 })
    }
}

/// Hands the shared state to prometheus-client at each scrape.
#[derive(Debug)]
struct Scrape(Arc<Mutex<Exported>>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).encode(&mut encoder)
    }
}

pub fn registry(exported: Arc<Mutex<Exported>>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(exported)));
    registry
}

/// The text exposition of everything registered.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The value of one series (`name{labels}`) in a text exposition.
#[cfg(test)]
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(peer: &str) -> FindingKey {
        FindingKey { kind: "paws_rejections", variant: "established", peer: peer.into(), netns: "srv".into() }
    }

    fn render_of(exported: Exported) -> String {
        render(&registry(Arc::new(Mutex::new(exported)))).unwrap()
    }

    #[test]
    fn top_peers_get_series_and_the_rest_add_up_in_other() {
        let now = Instant::now();
        let mut exported = Exported::new(2, Duration::from_secs(60), &["paws_rejections".into()]);
        exported.workloads.by_netns = HashMap::from([("srv".to_string(), "container/web".to_string())]);
        let rises: Vec<_> = [("198.51.100.2", 50), ("198.51.100.3", 20), ("198.51.100.4", 5), ("198.51.100.5", 1)]
            .iter()
            .map(|(p, n)| (key(p), *n))
            .collect();
        exported.record(&rises, now);
        assert_eq!(exported.per_peer_series(), 2);
        let text = render_of(exported);
        let series = |peer: &str| {
            let (netns, workload) = if peer == OTHER { (OTHER, OTHER) } else { ("srv", "container/web") };
            format!("netdiag_paws_rejections_total{{variant=\"established\",peer=\"{peer}\",netns=\"{netns}\",workload=\"{workload}\"}}")
        };
        assert_eq!(sample(&text, &series("198.51.100.2")), Some(50.0), "{text}");
        assert_eq!(sample(&text, &series("198.51.100.3")), Some(20.0));
        assert_eq!(sample(&text, &series("198.51.100.4")), None);
        assert_eq!(sample(&text, &series(OTHER)), Some(6.0));
        assert!(text.contains("# TYPE netdiag_paws_rejections_total counter"), "{text}");
        assert_eq!(sample(&text, "netdiag_findings_active{kind=\"paws_rejections\"}"), Some(0.0));
        assert!(sample(&text, "netdiag_process_resident_memory_bytes").is_some_and(|b| b > 0.0), "{text}");
    }

    #[test]
    fn peers_of_two_containers_sharing_a_namespace_keep_their_own_workload() {
        let container = |name: &str| crate::workload::Workload { kind: "container", name: Some(name.into()), ..Default::default() };
        let finding = |peer: &str, workload: &str| crate::verdict::Finding {
            peer: peer.into(),
            netns: "srv".into(),
            workload: Some(container(workload)),
            ..Default::default()
        };
        let labels = WorkloadLabels::of_findings(&[finding("198.51.100.2", "web"), finding("198.51.100.3", "sidecar")]);
        assert_eq!(labels.of("198.51.100.2", "srv"), "container/web");
        assert_eq!(labels.of("198.51.100.3", "srv"), "container/sidecar");
        // A peer with no finding of its own there (the duplicate-ACK families): the namespace's.
        assert!(["container/web", "container/sidecar"].contains(&labels.of("198.51.100.9", "srv").as_str()));
        assert_eq!(labels.of("198.51.100.9", "cli"), "netns/cli");
        assert_eq!(labels.of("198.51.100.9", "root"), "host");
    }

    #[test]
    fn a_family_without_variants_has_no_variant_label() {
        let dupacks = FindingKey { kind: "dupacks_sent", variant: "", peer: "198.51.100.2".into(), netns: "srv".into() };
        let mut exported = Exported::new(2, Duration::from_secs(60), &[]);
        exported.record(&[(dupacks, 9)], Instant::now());
        let text = render_of(exported);
        assert_eq!(sample(&text, "netdiag_dupacks_sent_total{peer=\"198.51.100.2\",netns=\"srv\",workload=\"netns/srv\"}"), Some(9.0), "{text}");
    }

    #[test]
    fn quiet_series_expire_and_busier_peers_take_their_place() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut exported = Exported::new(1, Duration::from_secs(30), &[]);
        exported.record(&[(key("a"), 10)], at(0));
        exported.record(&[], at(10));
        assert_eq!(exported.per_peer_series(), 1, "quiet for less than the expiry");
        exported.record(&[], at(31));
        assert_eq!(exported.per_peer_series(), 0, "expired");
        exported.record(&[(key("a"), 1)], at(32));
        exported.record(&[(key("b"), 100)], at(33));
        let family = &exported.families["paws_rejections"];
        let peers: Vec<&str> = family.named.keys().map(|k| k.peer.as_str()).collect();
        assert_eq!(peers, ["b"]);
        // Memory stays bounded: peers whose score decayed away are forgotten.
        exported.record(&[], at(33 + 3600));
        assert!(exported.families["paws_rejections"].scores.len() <= 1);
    }

    #[test]
    fn many_peers_never_exceed_the_bound() {
        let start = Instant::now();
        let mut exported = Exported::new(5, Duration::from_secs(600), &[]);
        for cycle in 0..100u64 {
            let rises: Vec<_> = (0..100).map(|i| (key(&format!("p{cycle}-{i}")), 1 + i % 7)).collect();
            exported.record(&rises, start + Duration::from_secs(cycle));
            assert!(exported.per_peer_series() <= 5);
        }
        let family = &exported.families["paws_rejections"];
        assert!(family.scores.len() <= MAX_SCORED);
        let total: u64 = family.named.values().map(|s| s.value).sum::<u64>() + family.other.values().sum::<u64>();
        assert!(total <= 100 * (0..100).map(|i| 1 + i % 7).sum::<u64>());
    }

    #[test]
    fn process_stats_are_read() {
        let stats = ProcessStats::read().unwrap();
        assert!(stats.rss_bytes > 1 << 20);
        assert!(stats.cpu_seconds >= 0.0);
    }
}
