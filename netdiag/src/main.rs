mod cli_docs;

use std::{process::ExitCode, time::Duration};

use clap::{CommandFactory, Parser, Subcommand};
use netdiag::{
    error::{EXIT_UNAVAILABLE, EXIT_USAGE, Unavailable, Usage},
    filter::PeerFilter,
    hooks, operator,
    output::pcap::PcapTarget,
    session::{self, DiagnoseOptions},
    workload::Selector,
};

/// Names the peer behind TCP PAWS rejections, unanswered SYNs and ACK loops.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Trace for a while, then report which peers the kernel rejected, why, and what to do.
    Diagnose {
        /// How long to trace, in seconds (Ctrl-C ends early and still reports).
        #[arg(long, default_value_t = 20.0, value_parser = parse_duration)]
        duration: f64,
        /// One JSON document on stdout instead of text.
        #[arg(long)]
        json: bool,
        /// Only report peers in this address or CIDR.
        #[arg(long, value_name = "IP|CIDR")]
        peer: Option<PeerFilter>,
        /// Only report drops sent to this local port.
        #[arg(long, value_name = "N")]
        port: Option<u16>,
        /// Only report this network namespace (`root` or an `ip netns` name).
        #[arg(long, value_name = "NAME")]
        netns: Option<String>,
        /// Only report the network namespace of this container: its name, its id, or an id prefix
        /// of at least 12 digits (podman, docker, containerd, CRI-O).
        #[arg(long, value_name = "NAME|ID", conflicts_with_all = ["netns", "pod"])]
        container: Option<String>,
        /// Only report the network namespace of this Kubernetes pod.
        #[arg(long, value_name = "NAMESPACE/NAME", conflicts_with = "netns")]
        pod: Option<String>,
        /// Which attach mechanism may serve the hooks: the best one per hook, or only this one (hooks
        /// that exist only as tracepoints keep them).
        #[arg(long, value_enum, env = "NETDIAG_BACKEND", default_value_t = hooks::BackendChoice::Auto)]
        backend: hooks::BackendChoice,
        /// Write the headers of the dropped segments to FILE as pcapng (created mode 0600).
        #[arg(long, value_name = "FILE")]
        pcap: Option<std::path::PathBuf>,
        /// Replace the --pcap file if it exists.
        #[arg(long, requires = "pcap")]
        overwrite: bool,
        /// Also count drops with this kernel drop reason per peer (e.g. NO_SOCKET); repeatable.
        #[arg(long = "reason", value_name = "NAME")]
        reasons: Vec<String>,
    },
    /// TCP counter deltas per namespace, grouped and explained; no tracing, no eBPF.
    Counters(operator::counters::CountersArgs),
    /// What a counter, drop reason or finding means, what causes it and what to do.
    Explain(operator::explain::ExplainArgs),
    /// Audit the TCP settings and listeners behind the incidents netdiag diagnoses.
    Check(operator::check::CheckArgs),
    /// Attach every hook this kernel allows, show which backend serves each and why others were refused.
    Hooks(hooks::command::HooksArgs),
    /// Print a shell completion script, or the man page, on stdout.
    Completions {
        /// bash, zsh, fish, elvish, powershell, or man for the man page (roff).
        #[arg(value_enum)]
        target: cli_docs::Target,
    },
    /// Live table of peers by problem rate, refreshed from the kernel's exact per-peer counts.
    Top(netdiag::top::TopArgs),
    /// Reproduce each known incident in throwaway namespaces and check netdiag sees it here.
    Selftest(netdiag::selftest::SelftestArgs),
    /// Run the detectors until SIGTERM, serving Prometheus metrics and writing JSON lines.
    Agent(netdiag::agent::AgentArgs),
    /// Trace one remote address: its flows, SYN funnel, PAWS rejections, timestamp clocks, sockets, findings.
    Peer(netdiag::peer::PeerArgs),
}

fn parse_duration(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(s),
        _ => Err(format!("`{text}` is not a duration in seconds between 0 and 86400")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e.into()),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => fail(e),
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Diagnose { duration, json, peer, port, netns, container, pod, backend, pcap, overwrite, reasons } => {
            let watched_reasons = hooks::watched_with(&reasons)?;
            let hooks = hooks::Options { backend, watched_reasons, ..hooks::Options::default() };
            let pcap = pcap.map(|path| PcapTarget { path, overwrite });
            let workload = container.map(Selector::Container).or(pod.map(Selector::Pod));
            let opts =
                DiagnoseOptions { duration: Duration::from_secs_f64(duration), peer, port, netns, workload, hooks, pcap };
            let report = session::diagnose(&opts).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(0)
        }
        Command::Top(args) => netdiag::top::run(args).await,
        Command::Selftest(args) => netdiag::selftest::run(args).await,
        Command::Peer(args) => netdiag::peer::run(args).await,
        Command::Counters(args) => operator::counters::run(args).await,
        Command::Explain(args) => operator::explain::run(args).await,
        Command::Check(args) => operator::check::run(args).await,
        Command::Hooks(args) => hooks::command::run(args),
        Command::Completions { target } => cli_docs::print(target, Cli::command()),
        Command::Agent(args) => netdiag::agent::run(args).await,
    }
}

fn fail(err: anyhow::Error) -> ExitCode {
    if let Some(missing) = err.downcast_ref::<Unavailable>() {
        eprintln!("netdiag: {missing}");
        return ExitCode::from(EXIT_UNAVAILABLE as u8);
    }
    if let Some(usage) = err.downcast_ref::<Usage>() {
        eprintln!("netdiag: {usage}");
        return ExitCode::from(EXIT_USAGE as u8);
    }
    eprintln!("netdiag: error: {err:#}");
    ExitCode::FAILURE
}
