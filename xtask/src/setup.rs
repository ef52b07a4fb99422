//! `cargo xtask setup`: everything a fresh machine needs, idempotent and quick when done.
//!
//! - Debian packages the tests and the VM bench use;
//! - the nightly toolchain's rust-src (eBPF programs are built with `-Z build-std=core`);
//! - bpf-linker, built against the very libLLVM that nightly rustc ships, so the bitcode rustc
//!   emits and the linker reads come from the same LLVM;
//! - the musl target for the static binaries the VM guests run;
//! - cargo-fuzz for the fuzz targets in tests/fuzz;
//! - cargo-deb and kubernetes-validate for the packaging tests (tests/tests/packaging.rs).
use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{output_of, run};

const APT_PACKAGES: &[&str] = &[
    "iproute2",
    "nftables",
    "bpftool",
    "kmod",
    "cpio",
    "xz-utils",
    "busybox-static",
    "musl-tools",
    "qemu-system-x86",
    // `netdiag top` is tested in a tmux pane; the man page is linted with groff.
    "tmux",
    "groff-base",
    // `diagnose --pcap` evidence is read back with tshark.
    "tshark",
    // The bench's comparison: the same counts from a bpftrace script.
    "bpftrace",
    // `netdiag agent` is tested with a real Prometheus server scraping it and promtool checking
    // the alert rules and scrape config (the package's own service is never started: tests run
    // the binary on a loopback port with their own storage); systemd-analyze verifies the unit.
    "prometheus",
    "systemd",
    // Workload attribution and the packaging tests use real containers: podman runs them
    // through runc (Debian 12's crun refuses hosts with cgroup v1 and v2 mounted together);
    // netavark named so apt does not pick the older CNI plugins for podman's network stack. The
    // agent's image has no registry to come from: its Debian base is made with debootstrap
    // from the Debian mirror, and the .deb is installed with `dpkg --root` into a copy of it.
    "podman",
    "runc",
    "netavark",
    "debootstrap",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

pub fn setup() -> Result<()> {
    apt_packages()?;
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    run(Command::new("rustup").args(["target", "add", MUSL_TARGET]))?;
    bpf_linker()?;
    cargo_fuzz()?;
    cargo_deb()?;
    kubernetes_validate()?;
    Ok(())
}

const CARGO_DEB_VERSION: &str = "3.8.0";

/// `cargo deb` builds the .deb of ops/deb/build.sh from netdiag/Cargo.toml's metadata.
fn cargo_deb() -> Result<()> {
    let installed = Command::new("cargo").args(["deb", "--version"]).output();
    if installed.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION)) {
        return Ok(());
    }
    run(Command::new("cargo").args(["install", "--locked", "cargo-deb", "--version", CARGO_DEB_VERSION]))
}

const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";

/// kubernetes-validate checks ops/kubernetes against the Kubernetes API schemas it ships (no
/// cluster needed); its PyYAML also reads the manifest for the test that runs the image.
fn kubernetes_validate() -> Result<()> {
    // As a module: the script may not be on PATH yet, behind pyenv's shims.
    let installed = Command::new("python3").args(["-m", "kubernetes_validate", "--version"]).output();
    if installed.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == KUBERNETES_VALIDATE_VERSION) {
        return Ok(());
    }
    run(Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", &format!("kubernetes-validate=={KUBERNETES_VALIDATE_VERSION}")]))
}

const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// `cargo fuzz` for the fuzz targets in tests/fuzz.
fn cargo_fuzz() -> Result<()> {
    let installed = Command::new("cargo").args(["fuzz", "--version"]).output();
    if installed.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION)) {
        return Ok(());
    }
    run(Command::new("cargo").args(["install", "--locked", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION]))
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|pkg| {
            let status = Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]).output();
            !matches!(status, Ok(out) if String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Where the libLLVM symlinks live; bpf-linker's rpath points here, so it must persist.
fn llvm_prefix() -> Result<PathBuf> {
    let home = std::env::var("HOME").context("HOME is not set")?;
    Ok(Path::new(&home).join(".cache/netdiag/llvm"))
}

fn bpf_linker() -> Result<()> {
    let nightly = output_of(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let llvm_major = nightly
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("`rustc +nightly -vV` names no LLVM version")?
        .to_string();
    let prefix = llvm_prefix()?;
    let stamp = prefix.join("built-for");
    let wanted = format!("bpf-linker {BPF_LINKER_VERSION}\n{nightly}");
    let linker_runs = Command::new("bpf-linker").arg("--version").output().is_ok_and(|o| o.status.success());
    if linker_runs && fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(());
    }

    let sysroot = output_of(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let libllvm = find_libllvm(&Path::new(sysroot.trim()).join("lib"))?;
    let lib_dir = prefix.join("lib");
    fs::create_dir_all(&lib_dir)?;
    let soname = libllvm.file_name().context("libLLVM path has no file name")?;
    for link in [lib_dir.join("libLLVM.so"), lib_dir.join(soname)] {
        let _ = fs::remove_file(&link);
        symlink(&libllvm, &link).with_context(|| format!("symlink {}", link.display()))?;
    }
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM {llvm_major} (about a minute)");
    run(Command::new("cargo")
        .args(["install", "--locked", "--force", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features", &format!("llvm-{llvm_major}")])
        .env("LLVM_PREFIX", &prefix))?;
    fs::write(&stamp, wanted)?;
    Ok(())
}

/// Nightly ships libLLVM as `libLLVM.so.<ver>-rust-<rustver>` (the soname) in its sysroot.
fn find_libllvm(lib: &Path) -> Result<PathBuf> {
    for entry in fs::read_dir(lib).with_context(|| format!("read {}", lib.display()))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("libLLVM.so.") || (name.starts_with("libLLVM-") && name.ends_with(".so")) {
            return Ok(path);
        }
    }
    bail!("no libLLVM in {}: is the nightly toolchain complete?", lib.display())
}
