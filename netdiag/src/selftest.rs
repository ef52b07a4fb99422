//! `netdiag selftest`: reproduces each incident netdiag knows in throwaway namespaces on this
//! host and checks that a diagnose session names the culprit with the kernel's count, so that
//! "no findings" can be trusted on this kernel. The reproductions are `scenario`'s, the same the
//! integration tests use.
use std::{sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{
    btf::Btf,
    hooks,
    scenario::{self, LoopTopology, PawsRun, PawsTopology, ReplayTopology},
    session::{self, DiagnoseOptions},
    verdict::scorecard,
};

#[derive(Debug, clap::Args)]
pub struct SelftestArgs {
    /// One JSON document on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Seen,
    NotSeen,
    /// The kernel has no way for the active backend to see it; netdiag says so.
    Unsupported,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub incident: &'static str,
    /// The kernel drop reason the incident is seen by.
    pub reason: &'static str,
    pub status: Status,
    pub detail: String,
    /// What the kernel said against what netdiag concluded, per finding in the lab.
    pub scorecard: Vec<scorecard::Row>,
}

impl Outcome {
    fn new(incident: &'static str, reason: &'static str, status: Status, detail: String) -> Outcome {
        Outcome { incident, reason, status, detail, scorecard: Vec::new() }
    }

    /// With the scorecard of the findings `report` made about the lab's namespaces: a finding
    /// with no kernel fact behind it makes the incident not seen, whatever else was right.
    fn scored(mut self, report: &crate::output::Report, namespaces: &[&str]) -> Outcome {
        self.scorecard = report
            .findings
            .iter()
            .filter(|f| namespaces.contains(&f.netns.as_str()))
            .map(scorecard::Row::of)
            .collect();
        let unbacked: Vec<String> =
            self.scorecard.iter().filter(|r| !r.backed).map(|r| format!("{} / {}", r.kind, r.variant)).collect();
        if !unbacked.is_empty() {
            self.status = Status::NotSeen;
            self.detail += &format!("; no kernel fact behind {}", unbacked.join(", "));
        }
        self
    }
}

struct Incident {
    name: &'static str,
    /// Namespace tag (short: it becomes part of interface names).
    tag: &'static str,
    /// The drop reason the tracepoint backend sees it by.
    reason: &'static str,
    /// A logical hook that sees it on kernels without the reason, when one serves.
    hook_without_reason: Option<&'static str>,
    variant: &'static str,
    reproduce: fn(&PawsTopology) -> Result<PawsRun>,
}

/// The ACK loop of seed 001, reproduced across a router namespace for a few seconds.
const ACK_LOOP: &str = "ACK loop: a router rewrites sequence numbers";
const UNTHROTTLED_FLOOD: &str = "out-of-window flood, every segment answered";
const REMOTE_LOOP: &str = "ACK loop with its far end on another host";

/// Incidents about one flow, reproduced across a router namespace (`scenario::ack_loop`).
const FLOW_INCIDENTS: &[(&str, &str, HandshakeCheck)] = &[
    (ACK_LOOP, "TCP_OLD_SEQUENCE", |btf| Box::pin(check_ack_loop(btf))),
    (UNTHROTTLED_FLOOD, "TCP_INVALID_SEQUENCE", |btf| Box::pin(check_unthrottled_flood(btf))),
    (REMOTE_LOOP, "TCP_INVALID_SEQUENCE", |btf| Box::pin(check_remote_loop(btf))),
];
/// How long the loop runs, and how long the session goes on after it for the episode to end.
const ACK_LOOP_FOR: Duration = Duration::from_secs(3);
const ACK_LOOP_SETTLE: Duration = Duration::from_millis(1500);

const INCIDENTS: &[Incident] = &[
    Incident {
        name: "PAWS, established connection (IPv4)",
        tag: "st4",
        reason: "TCP_RFC7323_PAWS",
        hook_without_reason: None,
        variant: "established",
        reproduce: |topo| scenario::paws_established(topo, false, 5),
    },
    Incident {
        name: "PAWS, established connection (IPv6)",
        tag: "st6",
        reason: "TCP_RFC7323_PAWS",
        hook_without_reason: None,
        variant: "established",
        reproduce: |topo| scenario::paws_established(topo, true, 5),
    },
    Incident {
        name: "PAWS against TIME_WAIT, NAT'd clients (seed 002)",
        tag: "sttw",
        reason: "TCP_RFC7323_TW_PAWS",
        hook_without_reason: Some("paws_time_wait"),
        variant: "time_wait",
        reproduce: scenario::paws_time_wait,
    },
    Incident {
        name: "handshake echoing a timestamp never sent",
        tag: "stts",
        reason: "TCP_RFC7323_TSECR",
        hook_without_reason: None,
        variant: "tsecr",
        reproduce: |topo| scenario::paws_tsecr(topo, 3),
    },
];

/// Longest a reproduction may take; each one stops by itself well before.
const INCIDENT_DEADLINE: Duration = Duration::from_secs(60);

/// Exit status 0 when every incident is seen (or reported unsupported), 1 when one is missed.
pub async fn run(args: SelftestArgs) -> Result<i32> {
    let btf = Btf::from_sys_fs()?;
    let mut outcomes = Vec::new();
    for incident in INCIDENTS {
        let outcome = check(incident, &btf).await.unwrap_or_else(|e| {
            Outcome::new(incident.name, incident.reason, Status::NotSeen, format!("could not reproduce: {e:#}"))
        });
        outcomes.push(outcome);
    }
    for (name, reason, check) in HANDSHAKE_INCIDENTS {
        let outcome = check(&btf)
            .await
            .unwrap_or_else(|e| Outcome::new(name, reason, Status::NotSeen, format!("could not reproduce: {e:#}")));
        outcomes.push(outcome);
    }
    for (name, reason, check) in FLOW_INCIDENTS {
        let outcome = check(&btf)
            .await
            .unwrap_or_else(|e| Outcome::new(name, reason, Status::NotSeen, format!("could not reproduce: {e:#}")));
        outcomes.push(outcome);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    } else {
        print!("{}", table(&outcomes));
    }
    Ok(if outcomes.iter().any(|o| o.status == Status::NotSeen) { 1 } else { 0 })
}

/// Why the tracepoint backend cannot see drops of `reason` on this kernel, if it cannot.
fn missing_reason(btf: &Btf, reason: &str) -> Option<String> {
    let exists = btf.enum_value("skb_drop_reason", &format!("SKB_DROP_REASON_{reason}")).is_some();
    (!exists).then(|| format!("drop reason {reason} does not exist on this kernel; the tracepoint backend cannot see it"))
}

async fn check(incident: &'static Incident, btf: &Btf) -> Result<Outcome> {
    let outcome = |status, detail| Outcome::new(incident.name, incident.reason, status, detail);
    let missing = missing_reason(btf, incident.reason);
    if let (Some(missing), None) = (&missing, incident.hook_without_reason) {
        return Ok(outcome(Status::Unsupported, missing.clone()));
    }
    let topo = Arc::new(PawsTopology::new(incident.tag)?);
    let (report, run) = traced(&topo, Some(&topo.server_ns), incident.reproduce).await?;

    if let (Some(missing), Some(name)) = (&missing, incident.hook_without_reason)
        && let Some(hook) = report.hooks.iter().find(|h| h.name == name && !h.active)
    {
        return Ok(outcome(Status::Unsupported, format!("{missing}, and {name} is unavailable: {}", hook.detail)));
    }
    let client = run.client_addr.to_string();
    let named: u64 = report
        .findings
        .iter()
        .filter(|f| f.peer == client && f.variant == incident.variant)
        .map(|f| f.count)
        .sum();
    let status = if named == run.injected && named > 0 { Status::Seen } else { Status::NotSeen };
    let detail = format!("{named} of {} rejected segments attributed to {client}", run.injected);
    Ok(outcome(status, detail).scored(&report, &[&topo.server_ns]))
}

type HandshakeCheck = fn(&Btf) -> std::pin::Pin<Box<dyn Future<Output = Result<Outcome>> + '_>>;

/// Incidents of the SYN funnel, reproduced behind a real NAT (`scenario::nat`).
const HANDSHAKE_INCIDENTS: &[(&str, &str, HandshakeCheck)] = &[
    (NAT_INCIDENT, "TCP_RFC7323_TW_PAWS", |btf| Box::pin(check_nat(btf))),
    (OVERFLOW_INCIDENT, "none (TcpExtListenOverflows)", |_| Box::pin(check_overflow())),
    (REPLAY_INCIDENT, "TCP_INVALID_SYN", |btf| Box::pin(check_replay(btf))),
];
const NAT_INCIDENT: &str = "SYNs unanswered behind a real NAT (seed 002)";
const OVERFLOW_INCIDENT: &str = "listener that never accepts";
const REPLAY_INCIDENT: &str = "a live connection's SYN replayed (one host)";

/// A session on the lab's namespace `netns` (all, if None) while `reproduce` runs; the reproduction's result
/// is held until the report is made (it may hold the listener the report reads).
async fn traced<Topo: Send + Sync + 'static, T: Send + 'static>(
    topo: &Arc<Topo>,
    netns: Option<&str>,
    reproduce: fn(&Topo) -> Result<T>,
) -> Result<(crate::output::Report, T)> {
    let opts = DiagnoseOptions {
        duration: INCIDENT_DEADLINE,
        peer: None,
        port: None,
        netns: netns.map(str::to_string),
        workload: None,
        hooks: hooks::Options::default(),
        pcap: None,
    };
    let (result_tx, result_rx) = tokio::sync::oneshot::channel();
    let in_lab = topo.clone();
    // Polled only once tracing has started, so the reproduction never runs untraced.
    let reproduction = async move {
        let _ = result_tx.send(tokio::task::spawn_blocking(move || reproduce(&in_lab)).await);
    };
    let report = session::diagnose_until(&opts, reproduction).await?;
    let run = result_rx.await.context("the reproduction did not report")?.context("the reproduction panicked")??;
    Ok((report, run))
}

fn finding_count(report: &crate::output::Report, kind: &str, peer: &str, variant: &str) -> u64 {
    report.findings.iter().filter(|f| f.kind == kind && f.peer == peer && f.variant == variant).map(|f| f.count).sum()
}

async fn check_nat(btf: &Btf) -> Result<Outcome> {
    let topo = Arc::new(scenario::NatTopology::new("stnat", 2, 0)?);
    let (report, run) = traced(&topo, Some(&topo.server_ns), scenario::nat_time_wait).await?;
    let nat = run.nat_addr.to_string();
    let outcome = |status, detail| Outcome::new(NAT_INCIDENT, "TCP_RFC7323_TW_PAWS", status, detail);
    let clocks = report.findings.iter().any(|f| f.kind == "nat_timestamp_clocks" && f.peer == nat);
    let unanswered = finding_count(&report, "unanswered_syns", &nat, "time_wait_paws");
    let at_ingress = report.hooks.iter().any(|h| h.name == "conn_request" && h.active && !h.at_function());
    let has_reason = btf.enum_value("skb_drop_reason", "SKB_DROP_REASON_TCP_RFC7323_TW_PAWS").is_some();
    let detail = format!(
        "{unanswered} of {} unanswered SYNs attributed to {nat}; timestamp clocks {}",
        run.rejected_syns,
        if clocks { "told apart" } else { "not told apart" }
    );
    let checked = if clocks && unanswered == run.rejected_syns {
        outcome(Status::Seen, detail)
    } else if clocks && !has_reason && !at_ingress {
        outcome(Status::Unsupported, format!("{detail}; SYNs are counted at the listener and this kernel gives PAWS against TIME_WAIT no drop reason"))
    } else {
        outcome(Status::NotSeen, detail)
    };
    Ok(checked.scored(&report, &[&topo.server_ns]))
}

async fn check_overflow() -> Result<Outcome> {
    let topo = Arc::new(scenario::NatTopology::new("stovf", 0, 1)?);
    let (report, run) = traced(&topo, Some(&topo.server_ns), |topo| scenario::listen_overflow(topo, 1)).await?;
    let client = run.client_addr.to_string();
    let named = finding_count(&report, "unanswered_syns", &client, "listen_overflow");
    let status = if named == run.unanswered_syns && named > 0 { Status::Seen } else { Status::NotSeen };
    let detail = format!("{named} of {} unanswered SYNs attributed to {client} on :{}", run.unanswered_syns, run.server.port());
    Ok(Outcome::new(OVERFLOW_INCIDENT, "none (TcpExtListenOverflows)", status, detail).scored(&report, &[&topo.server_ns]))
}

/// One host whose SYN is replayed on its live 4-tuple: the replays are accounted for as the
/// kernel handled them (challenge ACKs from 6.12 on; on 6.1, which checks PAWS first, PAWS
/// rejections of a stale TSval), and no NAT is claimed.
async fn check_replay(btf: &Btf) -> Result<Outcome> {
    let reason = "TCP_INVALID_SYN";
    let outcome = |status, detail| Outcome::new(REPLAY_INCIDENT, reason, status, detail);
    if let Some(detail) = missing_reason(btf, reason) {
        return Ok(outcome(Status::Unsupported, detail));
    }
    let topo = Arc::new(ReplayTopology::new("streplay")?);
    let (report, run) = traced(&topo, Some(&topo.server_ns), scenario::syn_replay).await?;
    let client = run.client.ip().to_string();
    let nat_claimed = report.findings.iter().any(|f| f.kind == "nat_timestamp_clocks" && f.peer == client);
    let unknown = finding_count(&report, "unanswered_syns", &client, "unknown");
    let counter = |name: &str| report.counters.get(&topo.server_ns).and_then(|c| c.get(name)).copied().unwrap_or(0);
    let (accounted, how) = if counter("TcpExtTCPSYNChallenge") > 0 {
        let challenged: u64 = report
            .syn_funnel
            .iter()
            .filter(|r| r.peer == client && r.port == run.server.port())
            .map(|r| r.funnel.challenge_acks)
            .sum();
        (challenged, "answered by a challenge ACK")
    } else {
        let paws = finding_count(&report, "paws_rejections", &client, "established");
        (paws.saturating_sub(run.stale_segments), "rejected by PAWS (this kernel checks PAWS before the SYN)")
    };
    let detail = format!(
        "{accounted} of {} replayed SYNs {how}; {}; {unknown} unexplained",
        run.intact_replays,
        if nat_claimed { "a NAT claimed" } else { "no NAT claimed" }
    );
    let status = if accounted == run.intact_replays && !nat_claimed && unknown == 0 { Status::Seen } else { Status::NotSeen };
    Ok(outcome(status, detail).scored(&report, &[&topo.server_ns]))
}

/// Both ends of a loop must be named, each with out-of-window segments in and duplicate ACKs out.
async fn check_ack_loop(btf: &Btf) -> Result<Outcome> {
    // Which of the two sequence reasons each end sees depends on the flipped bit; both exist or
    // neither on any kernel.
    let reason = "TCP_OLD_SEQUENCE";
    let outcome = |status, detail| Outcome::new(ACK_LOOP, reason, status, detail);
    if let Some(detail) = missing_reason(btf, reason) {
        return Ok(outcome(Status::Unsupported, detail));
    }
    let topo = Arc::new(LoopTopology::new("stloop")?);
    // Both ends' namespaces: no namespace filter.
    let (report, run) = traced(&topo, None, |topo| {
        let (run, _) = scenario::start_ack_loop(topo, ACK_LOOP_FOR)?.finish()?;
        std::thread::sleep(ACK_LOOP_SETTLE);
        Ok(run)
    })
    .await?;
    let ends = [(run.client, run.server), (run.server, run.client)];
    let named = ends
        .iter()
        .filter(|(local, peer)| {
            report.findings.iter().any(|f| {
                f.kind == "ack_loop" && f.count > 0 && f.local == [local.to_string()] && f.peer == peer.ip().to_string()
            })
        })
        .count();
    let detail = format!("{named} of 2 ends of {} <-> {} named", run.client, run.server);
    let status = if named == 2 { Status::Seen } else { Status::NotSeen };
    Ok(outcome(status, detail).scored(&report, &[&topo.client_ns, &topo.server_ns]))
}

/// Spoofed out-of-window ACKs the server answers one by one: a flood, not a loop.
async fn check_unthrottled_flood(btf: &Btf) -> Result<Outcome> {
    let reason = "TCP_INVALID_SEQUENCE";
    let outcome = |status, detail| Outcome::new(UNTHROTTLED_FLOOD, reason, status, detail);
    if let Some(detail) = missing_reason(btf, reason) {
        return Ok(outcome(Status::Unsupported, detail));
    }
    let topo = Arc::new(LoopTopology::new("stflood")?);
    let (report, run) = traced(&topo, None, |topo| {
        let run = scenario::unthrottled_oow_flood(topo, scenario::OWN_PACE_PER_S, ACK_LOOP_FOR)?;
        std::thread::sleep(ACK_LOOP_SETTLE);
        Ok(run)
    })
    .await?;
    let peer = run.client.ip().to_string();
    let flood = finding_count(&report, "out_of_window_flood", &peer, "unthrottled");
    let in_lab = |f: &&crate::verdict::Finding| f.netns == topo.client_ns || f.netns == topo.server_ns;
    let loops = report.findings.iter().filter(in_lab).filter(|f| f.kind == "ack_loop").count();
    let detail = format!("{flood} of {} spoofed segments named an unthrottled flood; {loops} ACK loop(s) claimed", run.amount);
    let status = if flood > 0 && loops == 0 { Status::Seen } else { Status::NotSeen };
    Ok(outcome(status, detail).scored(&report, &[&topo.client_ns, &topo.server_ns]))
}

/// A loop seen from one end (`scenario::remote_end`): named a loop by its pace, not a flood.
async fn check_remote_loop(btf: &Btf) -> Result<Outcome> {
    let reason = "TCP_INVALID_SEQUENCE";
    let outcome = |status, detail| Outcome::new(REMOTE_LOOP, reason, status, detail);
    if let Some(detail) = missing_reason(btf, reason) {
        return Ok(outcome(Status::Unsupported, detail));
    }
    let topo = Arc::new(scenario::RemoteEndTopology::new("stremote")?);
    let (report, run) = traced(&topo, Some(&topo.server_ns), |topo| {
        let run = scenario::remote_ack_loop(topo, ACK_LOOP_FOR)?;
        std::thread::sleep(ACK_LOOP_SETTLE);
        Ok(run)
    })
    .await?;
    let peer = run.client.ip().to_string();
    let looped: u64 = report.findings.iter().filter(|f| f.kind == "ack_loop" && f.peer == peer).map(|f| f.count).sum();
    let floods = report.findings.iter().filter(|f| f.kind == "out_of_window_flood" && f.peer == peer).count();
    let pace = report
        .findings
        .iter()
        .find_map(|f| f.flow.as_ref()?.segments_per_round_trip)
        .map_or("no pace".to_string(), |n| format!("{n:.2} per round trip"));
    let detail =
        format!("{looped} of {} answers from the far end named an ACK loop ({pace}); {floods} flood(s) claimed", run.amount);
    let status = if looped > 0 && floods == 0 { Status::Seen } else { Status::NotSeen };
    Ok(outcome(status, detail).scored(&report, &[&topo.server_ns]))
}

fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::from("netdiag selftest: each incident reproduced in throwaway namespaces on this host\n\n");
    for o in outcomes {
        let status = match o.status {
            Status::Seen => "seen",
            Status::NotSeen => "NOT SEEN",
            Status::Unsupported => "unsupported",
        };
        out += &format!("  {:<50} {:<12} {}\n", o.incident, status, o.detail);
        out += &scorecard::text(&o.scorecard);
    }
    out
}
