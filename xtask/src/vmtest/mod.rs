//! `cargo xtask vmtest`: boots real Debian kernels in qemu and runs netdiag's integration
//! tests inside them, so the fentry and kprobe paths are exercised on the kernels users run
//! even where the host forbids them.

pub mod backend_cost;
mod binaries;
mod cpio;
mod init_script;
mod initramfs;
mod kernel;
mod qemu;
mod results;
mod summary;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use results::Outcome;
use summary::KernelReport;

/// Kernel series booted by `--kernel all`.
const ALL_SERIES: &[&str] = &["6.1", "6.12"];

/// A guest runs every test binary, and the scenario tests twice more with a backend forced:
/// about 15 minutes under TCG on 2 cores; twice that is a hang.
pub const GUEST_TIMEOUT_S: u64 = 1800;

/// Command-line arguments of `cargo xtask vmtest`.
#[derive(Debug, Clone, clap::Args)]
pub struct VmTestArgs {
    /// Kernel series to boot ("6.1", "6.12") or "all".
    #[arg(long, default_value = "all")]
    pub kernel: String,
    /// Seconds after which a guest that has not powered off is killed.
    #[arg(long, default_value_t = GUEST_TIMEOUT_S)]
    pub timeout: u64,
    /// Extra arguments for every test binary in the guest (a test name filter, --nocapture...).
    #[arg(last = true)]
    pub guest_args: Vec<String>,
}

/// What to run: one guest per kernel series, each with the same test arguments.
#[derive(Debug, Clone)]
pub struct VmTestOptions {
    pub kernel_series: Vec<String>,
    pub timeout: Duration,
    pub guest_args: Vec<String>,
}

impl From<VmTestArgs> for VmTestOptions {
    fn from(args: VmTestArgs) -> Self {
        let kernel_series = match args.kernel.as_str() {
            "all" => ALL_SERIES.iter().map(|s| s.to_string()).collect(),
            series => vec![series.to_string()],
        };
        VmTestOptions { kernel_series, timeout: Duration::from_secs(args.timeout), guest_args: args.guest_args }
    }
}

/// Builds the guest binaries once, then boots each kernel in turn and prints a summary.
/// Fails if any guest failed a test or check, did not finish, or ran no test; otherwise
/// returns how many guest tests passed and were ignored, over all kernels.
pub fn run(opts: VmTestOptions) -> Result<(u64, u64)> {
    let started = Instant::now();
    let work_dir = cargo_target_dir()?.join("vmtest");
    let binaries = binaries::build()?;
    let mut reports = Vec::new();
    for series in &opts.kernel_series {
        reports.push(run_one_kernel(series, &binaries, &opts, &work_dir)?);
    }
    summary::print_summary(&reports);
    println!("vmtest: total {:.0} s", started.elapsed().as_secs_f64());
    let problems: Vec<String> = reports.iter().flat_map(KernelReport::problems).collect();
    if !problems.is_empty() {
        bail!("vmtest failed:\n  {}", problems.join("\n  "));
    }
    let count = |wanted: Outcome| -> u64 {
        let guests = reports.iter().flat_map(|r| &r.guest.steps);
        guests.flat_map(|step| &step.tests).filter(|t| t.outcome == wanted).count() as u64
    };
    Ok((count(Outcome::Passed), count(Outcome::Ignored)))
}

/// A guest that dies before /init runs its first step is booted once more: under TCG a Debian
/// kernel has been seen to oops at boot (an int3 trap while it patches its own text), before
/// anything of netdiag ran.
const BOOT_ATTEMPTS: u32 = 2;

fn run_one_kernel(
    series: &str,
    binaries: &binaries::GuestBinaries,
    opts: &VmTestOptions,
    work_dir: &Path,
) -> Result<KernelReport> {
    let mut attempt = 1;
    loop {
        let guest = boot(series, series, binaries, &opts.guest_args, opts.timeout, work_dir)?;
        let outcome = results::parse_console(&guest.run.console);
        let died_booting = outcome.steps.is_empty() && !outcome.finished && !guest.run.timed_out;
        if died_booting && attempt < BOOT_ATTEMPTS {
            let kept = guest.log.with_extension(format!("boot{attempt}.log"));
            std::fs::rename(&guest.log, &kept)?;
            println!("vmtest: {series} died before /init ran a step (console log in {}); booting it once more", kept.display());
            attempt += 1;
            continue;
        }
        return Ok(KernelReport {
            series: series.to_string(),
            release: guest.release,
            elapsed: guest.run.elapsed,
            timed_out: guest.run.timed_out,
            guest: outcome,
        });
    }
}

/// A guest that has run to its end, powered off or killed.
struct BootedGuest {
    /// `uname -r` of its kernel.
    release: String,
    run: qemu::GuestRun,
    log: PathBuf,
}

/// Stages kernel `series`, packs `binaries` into an initramfs whose /init runs each of them
/// with `guest_args`, and boots it; `name` names its files in `work_dir` (the initramfs's
/// directory and the console log).
fn boot(
    series: &str,
    name: &str,
    binaries: &binaries::GuestBinaries,
    guest_args: &[String],
    timeout: Duration,
    work_dir: &Path,
) -> Result<BootedGuest> {
    let guest_dir = work_dir.join(name);
    let kernel = kernel::prepare(series, &work_dir.join("kernels"), &guest_dir.join("modules"))?;
    let initrd = initramfs::build(&kernel, binaries, guest_args, &guest_dir)?;
    let log = work_dir.join(format!("{name}.log"));
    println!("vmtest: booting {} ({}), console log in {}", series, kernel.release, log.display());
    let run = qemu::boot(&kernel.vmlinuz, &initrd, &log, timeout)?;
    Ok(BootedGuest { release: kernel.release, run, log })
}

/// Cargo's target directory (honours CARGO_TARGET_DIR and config), where vmtest keeps its cache.
fn cargo_target_dir() -> Result<PathBuf> {
    let stdout = command_stdout(
        Command::new(cargo()).args(["metadata", "--no-deps", "--format-version", "1"]).current_dir(workspace_root()),
    )?;
    let metadata: serde_json::Value = serde_json::from_slice(&stdout)?;
    let dir = metadata["target_directory"].as_str().context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(dir))
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cargo that runs xtask, so nested builds use the same toolchain.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Runs a command to completion, failing with its name if it cannot start or exits non-zero.
fn run_command(command: &mut Command) -> Result<()> {
    let status = command.status().with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// Runs a command and returns its stdout (stderr goes to the terminal), failing if it exits non-zero.
fn command_stdout(command: &mut Command) -> Result<Vec<u8>> {
    let output = command.stderr(Stdio::inherit()).output().with_context(|| format!("starting {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed: {}", output.status);
    }
    Ok(output.stdout)
}
