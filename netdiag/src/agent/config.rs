//! The agent's TOML config file. Every key is optional; an unknown key or a bad value is an
//! error that names the file, line and column, so a typo never silently falls back to a default.
use std::{net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;

use crate::{error::usage, filter::PeerFilter};

/// Finding kinds the agent knows how to export; `detectors` must name some of these.
pub const DETECTORS: &[&str] =
    &["paws_rejections", "ack_loop", "out_of_window_flood", "unanswered_syns", "nat_timestamp_clocks"];

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where /metrics is served; loopback unless the operator says otherwise.
    pub listen: SocketAddr,
    /// A file, or `-` for stdout, that gets one JSON line per finding change.
    pub json_lines: Option<String>,
    /// How often the kernel maps are read and findings rebuilt.
    pub interval: Duration,
    /// Per-peer series per metric family; the rest add up in `peer="other"`.
    pub top_peers: usize,
    /// A per-peer series that has not risen for this long is removed.
    pub series_expiry: Duration,
    /// A finding that has not risen for this long is closed.
    pub close_after: Duration,
    /// Turn on the kernel's per-program run time accounting while the agent runs.
    pub bpf_stats: bool,
    pub peer_entries: u32,
    pub ring_bytes: u32,
    /// Finding kinds to export; all of [`DETECTORS`] by default.
    pub detectors: Vec<String>,
    pub peers: Vec<PeerFilter>,
    /// `root` or `ip netns` names.
    pub netns: Vec<String>,
    /// Containers by name, id or id prefix (12 digits or more), and pods as `NAMESPACE/NAME`:
    /// their namespaces, looked up each cycle, so one that starts later is covered.
    pub containers: Vec<String>,
    pub pods: Vec<(String, String)>,
    /// Whether the per-packet programs wait for an incident (`on_demand`) or run throughout.
    pub deep_hooks: DeepHooks,
    /// A deep hook no incident has wanted for this long is detached again.
    pub deep_quiet: Duration,
}

/// `deep_hooks`: the per-packet receive and transmit programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeepHooks {
    /// Attached while the drop path or the counters show an incident of their kind.
    OnDemand,
    /// Attached for the agent's whole run, as diagnose attaches them.
    Always,
}

impl Default for Config {
    fn default() -> Self {
        let hooks = crate::hooks::Options::default();
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9465)),
            json_lines: None,
            interval: Duration::from_secs(5),
            top_peers: 10,
            series_expiry: Duration::from_secs(900),
            close_after: Duration::from_secs(300),
            bpf_stats: false,
            peer_entries: hooks.peer_entries,
            ring_bytes: hooks.ring_bytes,
            detectors: DETECTORS.iter().map(|d| d.to_string()).collect(),
            peers: Vec::new(),
            netns: Vec::new(),
            containers: Vec::new(),
            pods: Vec::new(),
            deep_hooks: DeepHooks::OnDemand,
            deep_quiet: Duration::from_secs(60),
        }
    }
}

/// The file as written; `None` keeps the default.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<SocketAddr>,
    json_lines: Option<String>,
    interval_s: Option<Seconds>,
    top_peers: Option<Bounded<1, 1000>>,
    series_expiry_s: Option<Seconds>,
    finding_close_after_s: Option<Seconds>,
    bpf_stats: Option<bool>,
    deep_hooks: Option<DeepHooks>,
    deep_quiet_s: Option<Seconds>,
    #[serde(default)]
    maps: Maps,
    detectors: Option<Vec<Detector>>,
    #[serde(default)]
    filters: Filters,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Maps {
    peer_entries: Option<Bounded<64, 1_048_576>>,
    /// A power of two of at least a page, as the kernel wants.
    ring_bytes: Option<RingBytes>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Filters {
    #[serde(default)]
    peers: Vec<Peer>,
    #[serde(default)]
    netns: Vec<String>,
    #[serde(default)]
    containers: Vec<ContainerName>,
    #[serde(default)]
    pods: Vec<PodName>,
}

/// A container's name or id, not empty.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct ContainerName(String);

impl TryFrom<String> for ContainerName {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if text.trim().is_empty() { Err("a container name or id must not be empty".into()) } else { Ok(ContainerName(text)) }
    }
}

/// `NAMESPACE/NAME` of a Kubernetes pod.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct PodName(String, String);

impl TryFrom<String> for PodName {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.split_once('/') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(PodName(namespace.into(), name.into()))
            }
            _ => Err(format!("a pod is NAMESPACE/NAME, not `{text}`")),
        }
    }
}

/// Seconds, 0.1 to one day.
#[derive(Deserialize)]
#[serde(try_from = "f64")]
struct Seconds(Duration);

impl TryFrom<f64> for Seconds {
    type Error = String;
    fn try_from(s: f64) -> Result<Self, String> {
        if (0.1..=86_400.0).contains(&s) {
            Ok(Seconds(Duration::from_secs_f64(s)))
        } else {
            Err(format!("{s} is not a number of seconds between 0.1 and 86400"))
        }
    }
}

#[derive(Deserialize)]
#[serde(try_from = "i64")]
struct Bounded<const MIN: i64, const MAX: i64>(i64);

impl<const MIN: i64, const MAX: i64> TryFrom<i64> for Bounded<MIN, MAX> {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&n) { Ok(Bounded(n)) } else { Err(format!("{n} is not between {MIN} and {MAX}")) }
    }
}

#[derive(Deserialize)]
#[serde(try_from = "i64")]
struct RingBytes(u32);

impl TryFrom<i64> for RingBytes {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        match u32::try_from(n) {
            Ok(n) if n >= 4096 && n.is_power_of_two() && n <= 1 << 30 => Ok(RingBytes(n)),
            _ => Err(format!("{n} is not a power of two between 4096 and 1073741824")),
        }
    }
}

#[derive(Deserialize)]
#[serde(try_from = "String")]
struct Detector(String);

impl TryFrom<String> for Detector {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        if DETECTORS.contains(&name.as_str()) {
            Ok(Detector(name))
        } else {
            Err(format!("unknown detector `{name}` (known: {})", DETECTORS.join(", ")))
        }
    }
}

#[derive(Deserialize)]
#[serde(try_from = "String")]
struct Peer(PeerFilter);

impl TryFrom<String> for Peer {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse().map(Peer)
    }
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read config file {}: {e}", path.display())))?;
        Config::parse(&text).map_err(|e| usage(format!("{}:{e}", path.display())))
    }

    /// The config a text describes; an error reads `LINE:COL: what is wrong`.
    pub fn parse(text: &str) -> Result<Config, String> {
        let file: File = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|span| line_col(text, span.start)).unwrap_or((1, 1));
            format!("{line}:{col}: {}", e.message().trim())
        })?;
        let default = Config::default();
        Ok(Config {
            listen: file.listen.unwrap_or(default.listen),
            json_lines: file.json_lines,
            interval: file.interval_s.map_or(default.interval, |s| s.0),
            top_peers: file.top_peers.map_or(default.top_peers, |k| k.0 as usize),
            series_expiry: file.series_expiry_s.map_or(default.series_expiry, |s| s.0),
            close_after: file.finding_close_after_s.map_or(default.close_after, |s| s.0),
            bpf_stats: file.bpf_stats.unwrap_or(default.bpf_stats),
            peer_entries: file.maps.peer_entries.map_or(default.peer_entries, |n| n.0 as u32),
            ring_bytes: file.maps.ring_bytes.map_or(default.ring_bytes, |n| n.0),
            detectors: file.detectors.map_or(default.detectors, |d| d.into_iter().map(|d| d.0).collect()),
            peers: file.filters.peers.into_iter().map(|p| p.0).collect(),
            netns: file.filters.netns,
            containers: file.filters.containers.into_iter().map(|c| c.0).collect(),
            pods: file.filters.pods.into_iter().map(|p| (p.0, p.1)).collect(),
            deep_hooks: file.deep_hooks.unwrap_or(default.deep_hooks),
            deep_quiet: file.deep_quiet_s.map_or(default.deep_quiet, |s| s.0),
        })
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert!(Config::default().listen.ip().is_loopback());
    }

    #[test]
    fn reads_every_key() {
        let config = Config::parse(
            r#"
listen = "127.0.0.1:19465"
json_lines = "-"
interval_s = 1
top_peers = 3
series_expiry_s = 60
finding_close_after_s = 2.5
bpf_stats = true
detectors = ["paws_rejections"]

[maps]
peer_entries = 1024
ring_bytes = 65536

[filters]
peers = ["198.51.100.0/24", "2001:db8::/32"]
netns = ["root"]
containers = ["web", "240d9ab4321e"]
pods = ["shop/web-0"]
"#,
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:19465".parse().unwrap());
        assert_eq!(config.json_lines.as_deref(), Some("-"));
        assert_eq!(config.interval, Duration::from_secs(1));
        assert_eq!(config.top_peers, 3);
        assert_eq!(config.close_after, Duration::from_millis(2500));
        assert!(config.bpf_stats);
        assert_eq!((config.peer_entries, config.ring_bytes), (1024, 65536));
        assert_eq!(config.detectors, ["paws_rejections"]);
        assert_eq!(config.peers.len(), 2);
        assert_eq!(config.netns, ["root"]);
        assert_eq!(config.containers, ["web", "240d9ab4321e"]);
        assert_eq!(config.pods, [("shop".to_string(), "web-0".to_string())]);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("listen = \"127.0.0.1:9465\"\ntop_peer = 3\n", "2:1:", "top_peer"),
            ("\n\n[maps]\nring_bytes = 1000\n", "4:14:", "power of two"),
            ("detectors = [\"paws_rejections\", \"ack_lop\"]\n", "1:13:", "unknown detector `ack_lop`"),
            ("[filters]\npeers = [\"198.51.100.0/33\"]\n", "2:9:", "prefix length"),
            ("listen = \"localhost\"\n", "1:10:", "socket address"),
            ("interval_s = 0\n", "1:14:", "between 0.1 and 86400"),
            ("top_peers = \n", "1:13:", ""),
            ("[filters]\npods = [\"web-0\"]\n", "2:8:", "NAMESPACE/NAME, not `web-0`"),
            ("[filters]\npods = [\"shop/\"]\n", "2:8:", "NAMESPACE/NAME"),
            ("[filters]\ncontainers = [\"\"]\n", "2:14:", "must not be empty"),
        ];
        for (text, at, what) in cases {
            let err = Config::parse(text).unwrap_err();
            assert!(err.starts_with(at) && err.contains(what), "{text:?} gave {err:?}");
        }
    }
}
