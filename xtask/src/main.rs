//! Project tasks: `cargo xtask setup | run | test`.
mod cmd;
mod fuzz;
mod setup;
mod tally;
mod vmtest;

use std::process::Command;

use anyhow::Result;
use clap::{Parser, Subcommand};
use cmd::run;
use tally::{TEST_TARGETS, Tally};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent).
    Setup,
    /// Set up, build netdiag (release) and run it as root with the given arguments.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then run unit tests and the real-kernel integration tests.
    Test,
    /// Boot Debian 6.1/6.12 kernels in qemu and run the integration tests inside them.
    Vmtest(vmtest::VmTestArgs),
    /// Run every fuzz target for a bounded time from the corpus kept in tests/fuzz.
    Fuzz(fuzz::FuzzArgs),
    /// The agent under mixed incident traffic: memory, CPU and map fill over time (release).
    Soak {
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
    },
    /// Overhead and capacity, side by side with no tracer and with bpftrace (release builds), and
    /// the cost per run of each backend in a qemu guest.
    Bench {
        /// Fewer repeats and shorter runs (a few minutes).
        #[arg(long)]
        quick: bool,
        /// Debian kernel series ("6.1", "6.12") booted for the per-backend costs.
        #[arg(long, default_value = "6.12")]
        guest_kernel: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Paths below are relative to the workspace root, wherever `cargo xtask` was started.
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))?;
    match cli.task {
        Task::Setup => setup::setup(),
        Task::Run { args } => {
            setup::setup()?;
            run(Command::new("cargo").args(["build", "--release", "-p", "netdiag"]))?;
            run(Command::new("target/release/netdiag").args(args))
        }
        Task::Test => {
            setup::setup()?;
            test()
        }
        Task::Vmtest(args) => {
            setup::setup()?;
            vmtest::run(args.into()).map(|_| ())
        }
        Task::Fuzz(args) => {
            setup::setup()?;
            fuzz::run_all(&args).map(|_| ())
        }
        Task::Soak { minutes } => {
            setup::setup()?;
            soak(minutes)
        }
        Task::Bench { quick, guest_kernel } => {
            setup::setup()?;
            bench(quick, &guest_kernel)
        }
    }
}

/// The guest's per-backend costs first (a failure becomes a row saying so), then the host bench,
/// which prints them in its table and results.
fn bench(quick: bool, guest_kernel: &str) -> Result<()> {
    let guest_rows = vmtest::backend_cost::rows(guest_kernel, if quick { 3 } else { 5 });
    let guest_rows_path = "target/bench/guest-rows.json";
    std::fs::create_dir_all("target/bench")?;
    std::fs::write(guest_rows_path, serde_json::to_string_pretty(&guest_rows)?)?;
    run(Command::new("cargo").args(["build", "--release", "-p", "netdiag", "-p", "netdiag-tests"]).args(["--bin", "netdiag", "--bin", "bench"]))?;
    let netdiag = std::env::current_dir()?.join("target/release/netdiag");
    let mut bench = Command::new("target/release/bench");
    bench.args(["--out", "target/bench/results.json", "--guest-rows", guest_rows_path]).env("NETDIAG_BIN", netdiag);
    if quick {
        bench.arg("--quick");
    }
    run(&mut bench)
}

/// Builds the release agent and the soak driver, then soaks.
fn soak(minutes: f64) -> Result<()> {
    run(Command::new("cargo").args(["build", "--release", "-p", "netdiag", "-p", "netdiag-tests"]).args(["--bin", "netdiag", "--bin", "soak"]))?;
    let netdiag = std::env::current_dir()?.join("target/release/netdiag");
    run(Command::new("target/release/soak").args(["--minutes", &minutes.to_string()]).env("NETDIAG_BIN", netdiag))
}

fn test() -> Result<()> {
    let mut tally = Tally::default();
    tally.run(Command::new("cargo").args(["test", "-p", "netdiag-common", "-p", "netdiag", "-p", "xtask"]).args(TEST_TARGETS))?;
    run(Command::new("cargo").args(["build", "-p", "netdiag"]))?;
    let bin = std::env::current_dir()?.join("target/debug/netdiag");
    // One at a time: every session traces the whole host, and the machine has two cores.
    tally.run(
        Command::new("cargo")
            .args(["test", "-p", "netdiag-tests"])
            .args(TEST_TARGETS)
            .args(["--", "--test-threads=1"])
            .env("NETDIAG_BIN", &bin),
    )?;
    // The perf-event twins, which this host's BTF-typed and raw tracepoints always stand in
    // for otherwise: the drop, receive and transmit programs reading records.
    tally.run(
        Command::new("cargo")
            .args(["test", "-p", "netdiag-tests", "--test", "paws", "--test", "ack_loop", "--test", "remote_loop"])
            .args(["--", "--test-threads=1"])
            .env("NETDIAG_BIN", &bin)
            .env("NETDIAG_BACKEND", "perf"),
    )?;
    // The same integration tests inside Debian 6.1 and 6.12 guests, where fentry and kprobes work.
    let vm_args = vmtest::VmTestArgs { kernel: "all".into(), timeout: vmtest::GUEST_TIMEOUT_S, guest_args: Vec::new() };
    let (passed, ignored) = vmtest::run(vm_args.into()).inspect_err(|_| tally.print_line())?;
    tally.passed += passed;
    tally.ignored += ignored;
    // A short soak: the agent's memory and maps stay bounded under mixed traffic.
    soak(1.0).inspect_err(|_| tally.print_line())?;
    tally.passed += 1;
    // Bounded: a regression in a parser of untrusted bytes shows within these seconds.
    tally.passed += fuzz::run_all(&fuzz::FuzzArgs { seconds: 20 }).inspect_err(|_| tally.print_line())?;
    tally.finish()
}
