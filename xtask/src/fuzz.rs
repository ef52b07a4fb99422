//! `cargo xtask fuzz [--seconds N]`: every cargo-fuzz target in tests/fuzz for a bounded time,
//! starting from the corpus kept in the repository. New inputs go to a scratch copy under
//! target/, so a run never rewrites the repository; a crash fails the task and leaves its input
//! under tests/fuzz/artifacts/.
use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, Result};

use crate::cmd::run;

const FUZZ_DIR: &str = "tests/fuzz";
/// Every target in tests/fuzz/Cargo.toml.
pub const TARGETS: &[&str] = &["tcp_options", "ring_records", "btf", "tracepoint_format", "agent_config"];
/// Inputs longer than this add time, not coverage: the parsers look at the first KiBs.
const MAX_LEN: u32 = 4096;

#[derive(Debug, Clone, clap::Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u32,
}

/// Returns how many targets ran clean.
pub fn run_all(args: &FuzzArgs) -> Result<u64> {
    for target in TARGETS {
        let scratch = Path::new("target/fuzz-corpus").join(target);
        fs::create_dir_all(&scratch).with_context(|| format!("create {}", scratch.display()))?;
        let kept = Path::new(FUZZ_DIR).join("corpus").join(target);
        eprintln!("xtask: fuzzing {target} for {} s", args.seconds);
        run(Command::new("cargo")
            .args(["+nightly", "fuzz", "run", "--fuzz-dir", FUZZ_DIR, "-O", target])
            .arg(&scratch)
            .arg(&kept)
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg(format!("-max_len={MAX_LEN}")))?;
    }
    println!("fuzz: {} targets ran {} s each without a crash", TARGETS.len(), args.seconds);
    Ok(TARGETS.len() as u64)
}
