//! `netdiag peer <IP>`: everything netdiag can tell about one remote address — every flow
//! seen, its SYN funnel, PAWS rejections by variant, its timestamp clocks, duplicate-ACK and
//! out-of-window counts, the sockets the kernel holds to it now (what `ss` shows) and the
//! findings about it. A diagnose session filtered on the address, then the sockets.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use netdiag_common::{PeerAddrKey, PeerStats};
use serde::Serialize;

use crate::{
    events::ip_from,
    filter::PeerFilter,
    hooks::{self, HookStatus},
    netns::{self, Netns},
    output::{self, PcapSummary, PeerReport, pcap::PcapTarget},
    session::{self, DiagnoseOptions, Details},
    verdict::{Finding, nat_clocks::PeerClocks, syn_funnel::FunnelRow},
    workload::{Selector, Workload},
};

#[derive(clap::Args)]
pub struct PeerArgs {
    /// The remote address to drill into.
    pub ip: IpAddr,
    /// How long to trace, in seconds (Ctrl-C ends early and still reports).
    #[arg(long, default_value_t = 20.0, value_parser = parse_duration)]
    pub duration: f64,
    /// One JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only this network namespace (`root` or an `ip netns` name).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Only the network namespace of this container (name, id, or 12+ digits of its id).
    #[arg(long, value_name = "NAME|ID", conflicts_with_all = ["netns", "pod"])]
    pub container: Option<String>,
    /// Only the network namespace of this Kubernetes pod.
    #[arg(long, value_name = "NAMESPACE/NAME", conflicts_with = "netns")]
    pub pod: Option<String>,
    /// Only what concerns this local port.
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Which attach mechanism may serve the hooks: the best one per hook, or only this one (hooks
    /// that exist only as tracepoints keep them).
    #[arg(long, value_enum, env = "NETDIAG_BACKEND", default_value_t = hooks::BackendChoice::Auto)]
    pub backend: hooks::BackendChoice,
    /// Write the headers of the peer's dropped segments to FILE as pcapng (created mode 0600).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<std::path::PathBuf>,
    /// Replace the --pcap file if it exists.
    #[arg(long, requires = "pcap")]
    pub overwrite: bool,
}

fn parse_duration(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(s),
        _ => Err(format!("`{text}` is not a duration in seconds between 0 and 86400")),
    }
}

/// One flow (4-tuple in one namespace) the samples showed.
#[derive(Clone, Debug, Serialize)]
pub struct Flow {
    pub netns: String,
    /// The container, pod or host behind `netns`; the one owning the local port where the
    /// kernel read the socket's cgroup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    pub local: String,
    pub remote: String,
    /// SYN samples and drop samples of the flow.
    pub syns: u64,
    pub drops: u64,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PawsCount {
    pub netns: String,
    /// The container, pod or host behind `netns`, as the finding names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    pub variant: String,
    pub count: u64,
}

/// The peer's out-of-window segments and the answers they got, per namespace; `None` where the
/// hook that counts them is not active on this kernel (`hooks` says why).
#[derive(Clone, Debug, Serialize)]
pub struct OutOfWindow {
    pub netns: String,
    /// The container, pod or host behind `netns`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// Segments dropped as outside the window (sequence checks), exact, from the kernel.
    pub segments_dropped: u64,
    pub dup_acks_sent: Option<u64>,
    pub answers_suppressed: Option<u64>,
}

/// Drop reasons of segments outside the receive window; watched during a `peer` session.
const OUT_OF_WINDOW_REASONS: &[&str] =
    &["TCP_OLD_SEQUENCE", "TCP_INVALID_SEQUENCE", "TCP_INVALID_END_SEQUENCE", "TCP_OVERWINDOW"];

/// A socket the kernel holds to the peer now, as `ss -tan` shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Socket {
    pub netns: String,
    /// The container, pod or host behind `netns`; the one owning the local port where the
    /// kernel read a socket's cgroup there during the session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    pub state: &'static str,
    pub local: String,
    pub remote: String,
    pub recv_q: u64,
    pub send_q: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PeerDrilldown {
    pub peer: String,
    pub kernel: String,
    pub duration_s: f64,
    pub hooks: Vec<HookStatus>,
    pub flows: Vec<Flow>,
    pub syn_funnel: Vec<FunnelRow>,
    pub paws_by_variant: Vec<PawsCount>,
    /// Every watched drop of the peer by kernel reason, per namespace (exact, from the kernel).
    pub drops: Vec<PeerReport>,
    pub timestamp_clocks: Vec<PeerClocks>,
    pub out_of_window: Vec<OutOfWindow>,
    pub sockets: Vec<Socket>,
    pub findings: Vec<Finding>,
    /// Where `--pcap` wrote the peer's dropped segments; absent without `--pcap`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcap: Option<PcapSummary>,
    pub lost_events: u64,
    pub unparsed_packets: u64,
}

pub async fn run(args: PeerArgs) -> Result<i32> {
    let filter: PeerFilter = args.ip.to_string().parse().map_err(crate::error::usage)?;
    let defaults = hooks::Options::default();
    let workload = args.container.clone().map(Selector::Container).or(args.pod.clone().map(Selector::Pod));
    // Not root: that one line first, before any look at other processes.
    hooks::privileges::check()?;
    // Before tracing: a container's namespace is reached through its processes while they run.
    let named = netns::named()?;
    let socket_namespaces: Vec<Netns> = match (&args.netns, &workload) {
        (Some(name), _) => named.into_iter().filter(|ns| &ns.name == name).collect(),
        (None, Some(selected)) => netns::find(selected.netns()?, &named).into_iter().collect(),
        (None, None) => named,
    };
    let opts = DiagnoseOptions {
        duration: Duration::from_secs_f64(args.duration),
        peer: Some(filter),
        port: args.port,
        netns: args.netns.clone(),
        workload,
        hooks: hooks::Options {
            backend: args.backend,
            watched_reasons: defaults.watched_reasons.iter().cloned().chain(OUT_OF_WINDOW_REASONS.iter().map(|r| r.to_string())).collect(),
            ..defaults.clone()
        },
        pcap: args.pcap.clone().map(|path| PcapTarget { path, overwrite: args.overwrite }),
    };
    let (report, details) = session::diagnose_detailed(&opts, std::future::pending()).await?;
    let drill = PeerDrilldown {
        peer: args.ip.to_string(),
        kernel: report.kernel,
        duration_s: report.duration_s,
        flows: flows(&details),
        paws_by_variant: report
            .findings
            .iter()
            .filter(|f| f.kind == "paws_rejections")
            .map(|f| PawsCount { netns: f.netns.clone(), workload: f.workload.clone(), variant: f.variant.to_string(), count: f.count })
            .collect(),
        out_of_window: out_of_window(&details, args.ip, &report.peers),
        sockets: sockets_to(args.ip, &socket_namespaces, |inode, port| details.owner(inode, Some(port))),
        hooks: report.hooks,
        syn_funnel: report.syn_funnel,
        drops: report.peers,
        timestamp_clocks: report.timestamp_clocks,
        findings: report.findings,
        pcap: report.pcap,
        lost_events: report.lost_events,
        unparsed_packets: report.unparsed_packets,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&drill)?);
    } else {
        print!("{}", drill.to_text());
    }
    Ok(0)
}

fn name_of(details: &Details, inode: u32) -> String {
    details.netns_names.get(&inode).cloned().unwrap_or_else(|| format!("inode:{inode}"))
}

fn flows(details: &Details) -> Vec<Flow> {
    let mut flows: Vec<_> = details.flows.clone();
    flows.sort_by_key(|(id, seen)| (seen.first_ns, *id));
    flows
        .into_iter()
        .map(|(id, seen)| Flow {
            netns: name_of(details, id.netns),
            workload: details.owner(id.netns, Some(id.local.port())),
            local: id.local.to_string(),
            remote: id.remote.to_string(),
            syns: seen.syns,
            drops: seen.drops,
            first_seen: details.clock.rfc3339(seen.first_ns),
            last_seen: details.clock.rfc3339(seen.last_ns),
        })
        .collect()
}

fn out_of_window(details: &Details, peer: IpAddr, drops: &[PeerReport]) -> Vec<OutOfWindow> {
    let per_ns = |counts: &Option<Vec<(PeerAddrKey, PeerStats)>>| -> Option<BTreeMap<String, u64>> {
        counts.as_ref().map(|all| {
            let mut by_ns = BTreeMap::new();
            for (key, stats) in all.iter().filter(|(k, _)| ip_from(k.family, &k.addr) == Some(peer)) {
                *by_ns.entry(name_of(details, key.netns)).or_default() += stats.count;
            }
            by_ns
        })
    };
    let (dupacks, suppressed) = (per_ns(&details.dupacks), per_ns(&details.oow_suppressed));
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    for report in drops {
        let n: u64 = OUT_OF_WINDOW_REASONS.iter().filter_map(|r| report.by_reason.get(*r)).sum();
        if n > 0 {
            *dropped.entry(report.netns.clone()).or_default() += n;
        }
    }
    let mut namespaces: BTreeSet<String> = dropped.keys().cloned().collect();
    namespaces.extend(dupacks.iter().chain(suppressed.iter()).flat_map(|m| m.keys().cloned()));
    if namespaces.is_empty() {
        // Nothing counted: one line that still says which counts exist on this kernel.
        namespaces.insert(ALL_NAMESPACES.into());
    }
    namespaces
        .into_iter()
        .map(|netns| OutOfWindow {
            workload: details.workload_named(&netns),
            segments_dropped: dropped.get(&netns).copied().unwrap_or(0),
            dup_acks_sent: dupacks.as_ref().map(|m| m.get(&netns).copied().unwrap_or(0)),
            answers_suppressed: suppressed.as_ref().map(|m| m.get(&netns).copied().unwrap_or(0)),
            netns,
        })
        .collect()
}

/// The out-of-window row that stands for every namespace when none counted anything.
const ALL_NAMESPACES: &str = "all";

/// The TCP sockets in `namespaces` whose remote address is `peer`, each with the workload
/// `owner` finds at its namespace inode and local port.
fn sockets_to(peer: IpAddr, namespaces: &[Netns], owner: impl Fn(u32, u16) -> Option<Workload>) -> Vec<Socket> {
    let mut out = Vec::new();
    for ns in namespaces {
        // The namespace may vanish while we look; what it held no longer matters then.
        let Ok(tables) = netns::run_in(&ns.path, || {
            let v4 = std::fs::read_to_string("/proc/thread-self/net/tcp").context("/proc/net/tcp")?;
            let v6 = std::fs::read_to_string("/proc/thread-self/net/tcp6").unwrap_or_default();
            Ok((v4, v6))
        }) else {
            continue;
        };
        for line in tables.0.lines().skip(1).chain(tables.1.lines().skip(1)) {
            let Ok(row) = parse_row(line) else { continue };
            if unmapped(row.remote.ip()) == peer {
                out.push(Socket {
                    netns: ns.name.clone(),
                    workload: owner(ns.inode, row.local.port()),
                    state: row.state,
                    local: row.local.to_string(),
                    remote: row.remote.to_string(),
                    recv_q: row.recv_q,
                    send_q: row.send_q,
                });
            }
        }
    }
    out
}

fn unmapped(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

struct Row {
    local: SocketAddr,
    remote: SocketAddr,
    state: &'static str,
    recv_q: u64,
    send_q: u64,
}

/// State names as `ss` prints them, by kernel state number.
const STATES: [&str; 13] = [
    "UNKNOWN", "ESTAB", "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "UNCONN", "CLOSE-WAIT",
    "LAST-ACK", "LISTEN", "CLOSING", "SYN-RECV",
];

/// One line of `/proc/net/tcp` or `tcp6`: `sl local rem st tx_queue:rx_queue ...`.
fn parse_row(line: &str) -> Result<Row> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    ensure!(fields.len() > 4, "short line: {line}");
    let state = usize::from_str_radix(fields[3], 16)?;
    let (tx, rx) = fields[4].split_once(':').context("no queue column")?;
    Ok(Row {
        local: endpoint(fields[1])?,
        remote: endpoint(fields[2])?,
        state: STATES.get(state).copied().unwrap_or("UNKNOWN"),
        send_q: u64::from_str_radix(tx, 16)?,
        recv_q: u64::from_str_radix(rx, 16)?,
    })
}

/// `0164330A:01BB` (IPv4) or 32 hex digits `:port` (IPv6): the address is printed as 32-bit
/// words in the kernel's byte order.
fn endpoint(text: &str) -> Result<SocketAddr> {
    let (addr, port) = text.split_once(':').context("endpoint without port")?;
    let port = u16::from_str_radix(port, 16)?;
    let words: Vec<[u8; 4]> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).map(u32::to_ne_bytes))
        .collect::<Result<_, _>>()?;
    let ip = match words.as_slice() {
        [v4] => IpAddr::V4(Ipv4Addr::from(*v4)),
        [a, b, c, d] => {
            let mut octets = [0u8; 16];
            for (i, word) in [a, b, c, d].iter().enumerate() {
                octets[i * 4..i * 4 + 4].copy_from_slice(*word);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => anyhow::bail!("bad address {addr}"),
    };
    Ok(SocketAddr::new(ip, port))
}

impl PeerDrilldown {
    pub fn to_text(&self) -> String {
        let mut out = format!("netdiag peer {} — kernel {}, {:.1} s\n", self.peer, self.kernel, self.duration_s);
        let hooks: Vec<String> =
            self.hooks.iter().filter(|h| h.active).map(|h| format!("{} via {}", h.name, h.backend)).collect();
        out += &format!("hooks: {}\n", hooks.join(", "));
        out += &format!("\nflows seen ({}):\n", self.flows.len());
        for f in &self.flows {
            out += &format!(
                "  {} → {} ({}): {} SYN(s), {} drop(s), {} … {}\n",
                f.remote,
                f.local,
                output::place(&f.netns, f.workload.as_ref()),
                f.syns,
                f.drops,
                f.first_seen,
                f.last_seen
            );
        }
        out += "\nSYN funnel:\n";
        if self.syn_funnel.is_empty() {
            out += "  none\n";
        } else {
            out += &output::funnel_table(&self.syn_funnel, |ns| output::netns_shown(ns, &self.findings, &self.drops));
        }
        out += "\nPAWS rejections by variant:\n";
        if self.paws_by_variant.is_empty() {
            out += "  none\n";
        }
        for p in &self.paws_by_variant {
            out += &format!("  {}: {} ({})\n", p.variant, p.count, output::place(&p.netns, p.workload.as_ref()));
        }
        out += "\ntimestamp clocks:\n";
        for c in &self.timestamp_clocks {
            out += &format!("  {}: {} clock(s) in {} SYNs", output::place(&c.netns, c.workload.as_ref()), c.clocks.len(), c.syns);
            if c.hosts_at_least >= 2 {
                out += &format!(", at least {} hosts", c.hosts_at_least);
            }
            out += "\n";
            for k in &c.clocks {
                out += &format!(
                    "    {:.0} Hz{} ports {:?}, {} SYN{}, {:+.1} s from the first\n",
                    k.hz,
                    if k.measured { " (measured)" } else { "" },
                    k.ports,
                    k.syns,
                    if k.syns == 1 { "" } else { "s" },
                    k.ahead_of_first_s
                );
            }
        }
        out += "\nout-of-window answers:\n";
        let shown = |v: Option<u64>| v.map_or("n/a (hook not active here)".to_string(), |n| n.to_string());
        for o in &self.out_of_window {
            let place = if o.netns == ALL_NAMESPACES { o.netns.clone() } else { output::place(&o.netns, o.workload.as_ref()) };
            out += &format!(
                "  {place}: segments dropped outside the window {}, duplicate ACKs sent {}, answers suppressed {}\n",
                o.segments_dropped,
                shown(o.dup_acks_sent),
                shown(o.answers_suppressed)
            );
        }
        out += &format!("\nsockets now ({}):\n", self.sockets.len());
        for s in &self.sockets {
            out += &format!(
                "  {:<10} {:>6} {:>6} {} ↔ {} ({})\n",
                s.state,
                s.recv_q,
                s.send_q,
                s.local,
                s.remote,
                output::place(&s.netns, s.workload.as_ref())
            );
        }
        out += &format!("\nfindings ({}):\n", self.findings.len());
        out += &self.findings.iter().map(output::finding_text).collect::<Vec<_>>().join("\n");
        if let Some(pcap) = &self.pcap {
            out += &format!(
                "\nevidence: {} packet(s) written to {} ({} not captured: rate limit)\n",
                pcap.packets, pcap.path, pcap.skipped
            );
        }
        out += &format!("\nlost events: {}, unparsed packets: {}\n", self.lost_events, self.unparsed_packets);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, time::SystemTime};

    use netdiag_common::FAMILY_IPV4;

    use super::*;
    use crate::{
        aggregate::{FlowId, FlowSeen},
        clock::Clock,
        workload::Table,
    };

    const PEER: &str = "198.51.100.7";
    /// A pod's namespace, which has no `ip netns` name.
    const POD_NS: u32 = 4026532178;
    /// A namespace `ip netns` names `lab`.
    const LAB_NS: u32 = 4026532200;
    /// The cgroup the kernel read off the socket on the pod's port 443.
    const WEB_CGROUP: u64 = 77;

    fn web() -> Workload {
        Workload {
            kind: "container",
            runtime: Some("cri-o".into()),
            id: Some("a".repeat(64)),
            name: Some("web".into()),
            pod: Some("web-0".into()),
            namespace: Some("shop".into()),
        }
    }

    fn pod() -> Workload {
        Workload { kind: "pod", pod: Some("web-0".into()), namespace: Some("shop".into()), ..Workload::default() }
    }

    fn lab() -> Workload {
        Workload { kind: "netns", name: Some("lab".into()), ..Workload::default() }
    }

    fn details() -> Details {
        let flow = |netns, local: &str| {
            let id = FlowId { netns, local: local.parse().unwrap(), remote: format!("{PEER}:41000").parse().unwrap() };
            (id, FlowSeen { syns: 1, drops: 2, first_ns: 1, last_ns: 2 })
        };
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&PEER.parse::<Ipv4Addr>().unwrap().octets());
        let dupacks = PeerAddrKey { addr, netns: POD_NS, family: FAMILY_IPV4, _pad: [0; 3] };
        Details {
            flows: vec![flow(POD_NS, "198.51.100.1:443"), flow(POD_NS, "198.51.100.1:8080"), flow(LAB_NS, "203.0.113.1:443")],
            dupacks: Some(vec![(dupacks, PeerStats { count: 3, ..PeerStats::default() })]),
            oow_suppressed: None,
            netns_names: HashMap::from([(POD_NS, format!("inode:{POD_NS}")), (LAB_NS, "lab".into())]),
            workloads: Table::of_namespaces([(POD_NS, pod()), (LAB_NS, lab())], [(WEB_CGROUP, web())]),
            socket_owners: HashMap::from([((POD_NS, 443), WEB_CGROUP)]),
            clock: Clock::at(0, SystemTime::UNIX_EPOCH),
        }
    }

    /// Out-of-window drops of the peer in `lab`, as the session's peer rows count them.
    fn lab_drops() -> Vec<PeerReport> {
        let by_reason = BTreeMap::from([("TCP_OLD_SEQUENCE".to_string(), 2)]);
        vec![PeerReport { addr: PEER.into(), netns: "lab".into(), workload: Some(lab()), by_reason }]
    }

    fn drilldown(details: &Details) -> PeerDrilldown {
        let paws = Finding { kind: "paws_rejections", variant: "time_wait", netns: format!("inode:{POD_NS}"), workload: Some(web()), count: 4, ..Finding::default() };
        PeerDrilldown {
            peer: PEER.into(),
            kernel: "6.18".into(),
            duration_s: 1.0,
            hooks: Vec::new(),
            flows: flows(details),
            syn_funnel: Vec::new(),
            paws_by_variant: vec![PawsCount { netns: paws.netns.clone(), workload: paws.workload.clone(), variant: "time_wait".into(), count: 4 }],
            drops: lab_drops(),
            timestamp_clocks: Vec::new(),
            out_of_window: out_of_window(details, PEER.parse().unwrap(), &lab_drops()),
            sockets: vec![Socket {
                netns: format!("inode:{POD_NS}"),
                workload: details.owner(POD_NS, Some(443)),
                state: "TIME-WAIT",
                local: "198.51.100.1:443".into(),
                remote: format!("{PEER}:41000"),
                recv_q: 0,
                send_q: 0,
            }],
            findings: vec![paws],
            pcap: None,
            lost_events: 0,
            unparsed_packets: 0,
        }
    }

    #[test]
    fn flows_name_the_container_owning_the_local_port_else_the_namespaces_workload() {
        let flows = flows(&details());
        let workload_at = |local: &str| flows.iter().find(|f| f.local == local).and_then(|f| f.workload.clone());
        assert_eq!(workload_at("198.51.100.1:443"), Some(web()), "the kernel read the socket's cgroup there");
        assert_eq!(workload_at("198.51.100.1:8080"), Some(pod()));
        assert_eq!(workload_at("203.0.113.1:443"), Some(lab()));
    }

    #[test]
    fn out_of_window_rows_name_their_namespaces_workload() {
        let details = details();
        let rows = out_of_window(&details, PEER.parse().unwrap(), &lab_drops());
        let named: Vec<(&str, Option<Workload>, u64, Option<u64>)> =
            rows.iter().map(|o| (o.netns.as_str(), o.workload.clone(), o.segments_dropped, o.dup_acks_sent)).collect();
        let pod_ns = format!("inode:{POD_NS}");
        assert_eq!(named, [(pod_ns.as_str(), Some(pod()), 0, Some(3)), ("lab", Some(lab()), 2, Some(0))]);
        // Nothing counted: the one row for every namespace belongs to no workload.
        let quiet = Details { dupacks: None, ..details };
        let rows = out_of_window(&quiet, PEER.parse().unwrap(), &[]);
        assert_eq!(rows.iter().map(|o| (o.netns.as_str(), o.workload.is_none())).collect::<Vec<_>>(), [(ALL_NAMESPACES, true)]);
    }

    #[test]
    fn every_namespace_row_of_the_json_carries_its_workload() {
        let json = serde_json::to_value(drilldown(&details())).unwrap();
        for part in ["flows", "paws_by_variant", "out_of_window", "sockets"] {
            for row in json[part].as_array().unwrap() {
                assert!(row["workload"]["kind"].is_string(), "{part}: {row:#}");
            }
        }
        assert_eq!(json["sockets"][0]["workload"]["name"], "web");
        assert_eq!(json["paws_by_variant"][0]["workload"]["pod"], "web-0");
        // Fields only when known: a row without a workload has no `workload` key at all.
        let bare = serde_json::to_value(OutOfWindow { netns: ALL_NAMESPACES.into(), workload: None, segments_dropped: 0, dup_acks_sent: None, answers_suppressed: None }).unwrap();
        assert!(bare.get("workload").is_none(), "{bare:#}");
    }

    #[test]
    fn text_names_workloads_as_the_diagnose_report_does_never_a_bare_inode() {
        let text = drilldown(&details()).to_text();
        assert!(!text.contains("inode:"), "{text}");
        let web = "container web (cri-o aaaaaaaaaaaa, pod shop/web-0)";
        for line in [
            format!("  {PEER}:41000 → 198.51.100.1:443 ({web}): 1 SYN(s), 2 drop(s)"),
            format!("  {PEER}:41000 → 198.51.100.1:8080 (pod shop/web-0): 1 SYN(s)"),
            format!("  {PEER}:41000 → 203.0.113.1:443 (netns lab): 1 SYN(s)"),
            format!("  time_wait: 4 ({web})\n"),
            "  pod shop/web-0: segments dropped outside the window 0, duplicate ACKs sent 3".to_string(),
            "  netns lab: segments dropped outside the window 2".to_string(),
            format!("198.51.100.1:443 ↔ {PEER}:41000 ({web})\n"),
        ] {
            assert!(text.contains(&line), "no `{line}` in:\n{text}");
        }
    }

    #[test]
    fn reads_proc_net_tcp_rows_of_both_families() {
        let v4 = "   3: 016433C6:01BB 076433C6:A028 06 00000000:00000000 03:00001770 00000000 0 0 0 3 0";
        let row = parse_row(v4).unwrap();
        assert_eq!(row.local, "198.51.100.1:443".parse().unwrap());
        assert_eq!(row.remote, "198.51.100.7:41000".parse().unwrap());
        assert_eq!(row.state, "TIME-WAIT");
        let v6 = "  0: B80D0120000000000000000001000000:01BB 0000000000000000FFFF0000076433C6:A028 01 \
                  00000005:00000002 00:00000000 00000000 0 0 1 1";
        let row = parse_row(v6).unwrap();
        assert_eq!(row.local, "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(unmapped(row.remote.ip()), "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!((row.state, row.send_q, row.recv_q), ("ESTAB", 5, 2));
    }
}
