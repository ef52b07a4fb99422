//! Fetches a Debian cloud kernel package with apt and stages its image plus the modules the
//! tests need. Packages are cached, so a warm run touches apt only for a local look-up.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{command_stdout, run_command};

/// Packages measured to exist and boot, used when apt names none for a series.
const KNOWN_PACKAGES: &[(&str, &str)] =
    &[("6.1", "linux-image-6.1.0-50-cloud-amd64"), ("6.12", "linux-image-6.12.113+deb12-cloud-amd64-unsigned")];

/// Modules loaded at boot; their dependencies come from modules.dep.
const GUEST_MODULES: &[&str] = &[
    // veth pairs between network namespaces.
    "veth",
    // nftables rules: NAT and masquerade, conntrack matches, rejects, rate limits.
    // Payload mangling is part of nf_tables itself.
    "nf_tables",
    "nft_chain_nat",
    "nft_nat",
    "nft_masq",
    "nft_ct",
    "nft_reject_inet",
    "nft_limit",
    // tc: netem delay and loss, prio + u32 to aim them, clsact + cls_bpf for tc programs.
    "sch_netem",
    "sch_prio",
    "cls_u32",
    "cls_matchall",
    "sch_ingress",
    "cls_bpf",
    // Socket statistics for ss.
    "inet_diag",
    "tcp_diag",
    // The ACK-loop scenarios' lossy router: nftables random numbers pick segments to drop or to
    // hold back behind a slow HTB class.
    "nft_numgen",
    "sch_htb",
    // The remote-end ACK loop: a wire in userspace between two namespaces' tun devices.
    "tun",
];

/// Module index files depmod reads besides the modules themselves.
const MODULE_INDEX_FILES: &[&str] = &["modules.order", "modules.builtin", "modules.builtin.modinfo"];

/// A kernel ready to boot: its image and a root holding `lib/modules/<release>`.
pub struct GuestKernel {
    /// `uname -r` of the kernel.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// Directory to copy into the initramfs root; holds only the staged modules.
    pub modules_root: PathBuf,
    /// Modules to load at boot (GUEST_MODULES less those built in or absent).
    pub boot_modules: Vec<String>,
}

/// Fetches (or reuses) the newest cloud kernel of `series` and stages its modules in `stage_dir`.
pub fn prepare(series: &str, cache_dir: &Path, stage_dir: &Path) -> Result<GuestKernel> {
    fs::create_dir_all(cache_dir)?;
    let deb = fetch_package(series, cache_dir)?;
    let unpacked = unpack(&deb)?;
    let release = kernel_release(&unpacked)?;
    let boot_modules = stage_modules(&unpacked, &release, stage_dir)?;
    Ok(GuestKernel {
        vmlinuz: unpacked.join("boot").join(format!("vmlinuz-{release}")),
        release,
        modules_root: stage_dir.to_path_buf(),
        boot_modules,
    })
}

fn fetch_package(series: &str, cache_dir: &Path) -> Result<PathBuf> {
    let fetch = || download_unless_cached(&choose_package(series)?, cache_dir);
    fetch().or_else(|err| {
        // Missing or stale package lists: refresh them, then the newest name may differ.
        eprintln!("vmtest: {err:#}; running apt-get update");
        run_command(Command::new("apt-get").arg("update"))?;
        fetch()
    })
}

fn choose_package(series: &str) -> Result<String> {
    if let Some(package) = newest_package_in_apt(series) {
        return Ok(package);
    }
    let known = KNOWN_PACKAGES.iter().find(|(known_series, _)| *known_series == series);
    known
        .map(|(_, package)| package.to_string())
        .with_context(|| format!("apt offers no linux-image-{series}.*-cloud-amd64 package"))
}

fn newest_package_in_apt(series: &str) -> Option<String> {
    let search = Command::new("apt-cache").args(["search", "--names-only", "^linux-image-.*-cloud-amd64"]).output();
    let stdout = String::from_utf8(search.ok()?.stdout).ok()?;
    let names = stdout.lines().filter_map(|line| line.split_whitespace().next());
    newest_package(names, series)
}

/// Picks the highest ABI of `series` among package names, preferring the signed package
/// (what users install) over its `-unsigned` twin; debug and meta packages never match.
fn newest_package<'a>(names: impl Iterator<Item = &'a str>, series: &str) -> Option<String> {
    names
        .filter_map(|name| Some((abi_version(name, series)?, !name.ends_with("-unsigned"), name)))
        .max()
        .map(|(_, _, name)| name.to_string())
}

/// The numbers of the ABI in `linux-image-<abi>-cloud-amd64[-unsigned]`, if `<abi>` is of `series`.
fn abi_version(package: &str, series: &str) -> Option<Vec<u64>> {
    let abi = package.strip_prefix("linux-image-")?;
    let abi = abi.strip_suffix("-unsigned").unwrap_or(abi).strip_suffix("-cloud-amd64")?;
    // "6.1" must not match "6.12.x": the series is followed by a dot.
    abi.strip_prefix(series)?.strip_prefix('.')?;
    abi.split(|c: char| !c.is_ascii_digit()).filter(|part| !part.is_empty()).map(|part| part.parse().ok()).collect()
}

fn download_unless_cached(package: &str, cache_dir: &Path) -> Result<PathBuf> {
    if let Some(deb) = cached_deb(package, cache_dir)? {
        return Ok(deb);
    }
    println!("vmtest: downloading {package}");
    run_command(Command::new("apt-get").args(["download", "-q", package]).current_dir(cache_dir))?;
    cached_deb(package, cache_dir)?.with_context(|| format!("apt-get download left no {package}_*.deb"))
}

fn cached_deb(package: &str, cache_dir: &Path) -> Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    let mut debs: Vec<PathBuf> = fs::read_dir(cache_dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".deb")
        })
        .collect();
    debs.sort();
    Ok(debs.pop())
}

/// Extracts the package next to it (once) and indexes its modules with depmod,
/// since Debian ships no modules.dep (the postinst generates it).
fn unpack(deb: &Path) -> Result<PathBuf> {
    let unpacked = PathBuf::from(deb.to_string_lossy().trim_end_matches(".deb"));
    if unpacked.is_dir() {
        return Ok(unpacked);
    }
    // Extract under a temporary name so an interrupted run never leaves a half tree behind.
    let partial = PathBuf::from(format!("{}.partial", unpacked.display()));
    if partial.exists() {
        fs::remove_dir_all(&partial)?;
    }
    run_command(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&partial))?;
    run_command(Command::new("depmod").arg("-b").arg(&partial).arg(kernel_release(&partial)?))?;
    fs::rename(&partial, &unpacked)?;
    Ok(unpacked)
}

fn kernel_release(root: &Path) -> Result<String> {
    let boot = root.join("boot");
    for entry in fs::read_dir(&boot).with_context(|| format!("reading {}", boot.display()))? {
        if let Some(release) = entry?.file_name().to_string_lossy().strip_prefix("vmlinuz-") {
            return Ok(release.to_string());
        }
    }
    bail!("no vmlinuz-* in {}", boot.display())
}

/// Copies GUEST_MODULES and their dependencies, decompressed for busybox's modprobe, into
/// `stage_dir/lib/modules/<release>` and indexes them. Returns the modules to load at boot.
fn stage_modules(unpacked: &Path, release: &str, stage_dir: &Path) -> Result<Vec<String>> {
    let source_dir = unpacked.join("lib/modules").join(release);
    let target_dir = stage_dir.join("lib/modules").join(release);
    if stage_dir.exists() {
        fs::remove_dir_all(stage_dir)?;
    }
    fs::create_dir_all(&target_dir)?;
    let modules_dep = fs::read_to_string(source_dir.join("modules.dep"))?;
    let selection = select_modules(&modules_dep, GUEST_MODULES);
    for missing in GUEST_MODULES.iter().filter(|name| !selection.boot_modules.iter().any(|found| found == *name)) {
        println!("vmtest: {release} has no loadable module {missing} (built in or absent)");
    }
    for file in &selection.files {
        copy_decompressed(&source_dir.join(file), &target_dir.join(file.trim_end_matches(".xz")))?;
    }
    for index in MODULE_INDEX_FILES {
        fs::copy(source_dir.join(index), target_dir.join(index))?;
    }
    run_command(Command::new("depmod").arg("-b").arg(stage_dir).arg(release))?;
    Ok(selection.boot_modules)
}

#[derive(Debug, PartialEq)]
struct ModuleSelection {
    /// Module files relative to lib/modules/<release>, with every dependency.
    files: BTreeSet<String>,
    /// The wanted modules found in modules.dep.
    boot_modules: Vec<String>,
}

/// Resolves module names against modules.dep, whose lines already list all dependencies.
fn select_modules(modules_dep: &str, wanted: &[&str]) -> ModuleSelection {
    let mut selection = ModuleSelection { files: BTreeSet::new(), boot_modules: Vec::new() };
    for line in modules_dep.lines() {
        let Some((file, dependencies)) = line.split_once(':') else { continue };
        let name = module_name(file);
        if wanted.contains(&name.as_str()) {
            selection.files.insert(file.to_string());
            selection.files.extend(dependencies.split_whitespace().map(str::to_string));
            selection.boot_modules.push(name);
        }
    }
    selection.boot_modules.sort_by_key(|name| wanted.iter().position(|w| w == name));
    selection
}

/// `kernel/net/sched/sch_netem.ko.xz` -> `sch_netem` (the kernel treats `-` as `_`).
fn module_name(file: &str) -> String {
    let base = file.rsplit('/').next().unwrap_or(file);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

fn copy_decompressed(source: &Path, target: &Path) -> Result<()> {
    fs::create_dir_all(target.parent().context("module path has no parent")?)?;
    if source.extension().is_some_and(|ext| ext == "xz") {
        fs::write(target, command_stdout(Command::new("xz").arg("-dc").arg(source))?)?;
    } else {
        fs::copy(source, target)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const APT_NAMES: &[&str] = &[
        "linux-image-6.1.0-47-cloud-amd64-dbg",
        "linux-image-6.1.0-9-cloud-amd64",
        "linux-image-6.1.0-50-cloud-amd64",
        "linux-image-6.1.0-56-cloud-amd64-unsigned",
        "linux-image-6.1.0-56-cloud-amd64",
        "linux-image-cloud-amd64",
        "linux-image-6.12-cloud-amd64",
        "linux-image-6.12.113+deb12-cloud-amd64-unsigned",
        "linux-image-6.12.117+deb12-cloud-amd64-dbg",
        "linux-image-6.12.117+deb12-cloud-amd64-unsigned",
        "linux-image-6.12.99+deb12-cloud-amd64",
    ];

    #[test]
    fn picks_the_newest_signed_package_of_a_series() {
        let newest = newest_package(APT_NAMES.iter().copied(), "6.1");
        assert_eq!(newest.as_deref(), Some("linux-image-6.1.0-56-cloud-amd64"));
    }

    #[test]
    fn compares_abi_numbers_numerically_and_keeps_6_1_apart_from_6_12() {
        let newest = newest_package(APT_NAMES.iter().copied(), "6.12");
        assert_eq!(newest.as_deref(), Some("linux-image-6.12.117+deb12-cloud-amd64-unsigned"));
    }

    #[test]
    fn finds_nothing_for_an_unknown_series() {
        assert_eq!(newest_package(APT_NAMES.iter().copied(), "5.10"), None);
    }

    #[test]
    fn selects_wanted_modules_with_their_dependencies() {
        let modules_dep = "\
kernel/drivers/net/veth.ko.xz:
kernel/net/netfilter/nft_masq.ko.xz: kernel/net/netfilter/nf_nat.ko.xz kernel/lib/libcrc32c.ko.xz
kernel/net/netfilter/nf_nat.ko.xz: kernel/lib/libcrc32c.ko.xz
kernel/net/sched/sch_netem.ko.xz:
";
        let selection = select_modules(modules_dep, &["nft_masq", "veth", "nf_tables"]);
        let files: Vec<&str> = selection.files.iter().map(String::as_str).collect();
        assert_eq!(
            files,
            [
                "kernel/drivers/net/veth.ko.xz",
                "kernel/lib/libcrc32c.ko.xz",
                "kernel/net/netfilter/nf_nat.ko.xz",
                "kernel/net/netfilter/nft_masq.ko.xz",
            ]
        );
        assert_eq!(selection.boot_modules, ["nft_masq", "veth"]);
    }

    #[test]
    fn module_names_drop_directory_and_compression() {
        assert_eq!(module_name("kernel/net/sched/sch_netem.ko.xz"), "sch_netem");
        assert_eq!(module_name("kernel/net/ipv4/tcp-diag.ko"), "tcp_diag");
    }
}
