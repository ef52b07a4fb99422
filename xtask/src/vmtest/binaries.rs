//! Builds netdiag and the integration test binaries as static musl executables, which run in
//! a guest that has no glibc.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{cargo, command_stdout, workspace_root};

const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// Test binaries that need host tools the guest lacks (bash and groff, tmux, tshark, prometheus,
/// promtool, systemd-analyze, podman, runc, dpkg, cargo-deb, kubernetes-validate), or a million
/// packets that emulation (TCG) would take far too long to send (flood): they run on the host
/// only. What they check of the kernel, the guests check through the other tests.
const HOST_ONLY_TESTS: &[&str] = &["agent", "completions", "containers", "flood", "packaging", "pcap", "top"];

pub struct GuestBinaries {
    pub netdiag: PathBuf,
    pub tests: Vec<TestBinary>,
    /// The tests are libtest harnesses, run one test at a time; a bench binary takes only its
    /// own flags.
    pub libtest: bool,
}

pub struct TestBinary {
    /// The cargo target name (`tests/foo.rs` -> `foo`), stable across builds unlike the file name.
    pub name: String,
    pub path: PathBuf,
}

/// Needs the musl target installed (`cargo xtask setup` adds it).
pub fn build() -> Result<GuestBinaries> {
    let netdiag = cargo_executables(&["build", "-p", "netdiag", "--bin", "netdiag"])?
        .into_iter()
        .find(|artifact| artifact.name == "netdiag")
        .context("cargo built no netdiag executable")?;
    let mut tests: Vec<TestBinary> = cargo_executables(&["test", "--no-run", "-p", "netdiag-tests"])?
        .into_iter()
        .filter(|artifact| artifact.is_test && !HOST_ONLY_TESTS.contains(&artifact.name.as_str()))
        .map(|artifact| TestBinary { name: artifact.name, path: artifact.path })
        .collect();
    // Said once per run, so a reader of the table knows these were left out, not lost.
    eprintln!("xtask: host-only tests, not run in the guests (tools the guests lack): {}", HOST_ONLY_TESTS.join(", "));
    // Cargo reports artifacts in completion order; sorted, the guest runs them in a stable one.
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = tests.windows(2).find(|pair| pair[0].name == pair[1].name) {
        bail!("two test binaries are named {}", pair[0].name);
    }
    Ok(GuestBinaries { netdiag: netdiag.path, tests, libtest: true })
}

/// netdiag, and in the place of the tests the tests package's binary `bench`: the guest's
/// /init runs it as it runs each test binary.
pub fn build_with_bench(bench: &str) -> Result<GuestBinaries> {
    let built = cargo_executables(&["build", "-p", "netdiag", "-p", "netdiag-tests", "--bin", "netdiag", "--bin", bench])?;
    let path_of = |name: &str| {
        built.iter().find(|artifact| artifact.name == name).map(|artifact| artifact.path.clone())
    };
    Ok(GuestBinaries {
        netdiag: path_of("netdiag").context("cargo built no netdiag executable")?,
        tests: vec![TestBinary {
            name: bench.to_string(),
            path: path_of(bench).with_context(|| format!("cargo built no {bench} executable"))?,
        }],
        libtest: false,
    })
}

struct Executable {
    name: String,
    path: PathBuf,
    is_test: bool,
}

/// Runs a release musl cargo command and lists the executables it reports.
fn cargo_executables(args: &[&str]) -> Result<Vec<Executable>> {
    let stdout = command_stdout(
        Command::new(cargo())
            .args(args)
            .args(["--release", "--target", MUSL_TARGET, "--message-format=json-render-diagnostics"])
            .current_dir(workspace_root()),
    )?;
    Ok(String::from_utf8_lossy(&stdout).lines().filter_map(executable_of_message).collect())
}

fn executable_of_message(line: &str) -> Option<Executable> {
    let message: Value = serde_json::from_str(line).ok()?;
    if message["reason"] != "compiler-artifact" {
        return None;
    }
    Some(Executable {
        name: message["target"]["name"].as_str()?.to_string(),
        path: PathBuf::from(message["executable"].as_str()?),
        is_test: message["profile"]["test"].as_bool()?,
    })
}
