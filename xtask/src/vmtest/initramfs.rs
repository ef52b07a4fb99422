//! Assembles a guest's initramfs: busybox for the basics, the host's dash, iproute2,
//! nftables and setpriv with their shared libraries, the kernel's modules, netdiag, the tests and /init.

use std::fs::{self, File};
use std::io::BufWriter;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::binaries::GuestBinaries;
use super::command_stdout;
use super::cpio::Archive;
use super::init_script::{self, GUEST_NETDIAG, GUEST_TESTS_DIR, InitPlan};
use super::kernel::GuestKernel;

const BUSYBOX: &str = "/bin/busybox";
/// The guest's /bin/sh. Not busybox sh: it runs its own `ip` applet even where PATH names
/// iproute2's, and busybox `ip` has no `netns`.
const SHELL: &str = "/bin/dash";
/// Host tools the tests run through PATH, copied to /usr/sbin: iproute2, nftables,
/// util-linux's setpriv (busybox's lacks --reuid) and bpftool (what is still attached). Busybox
/// applets of the same name are left out so that these always win.
const HOST_TOOLS: &[&str] = &["ip", "tc", "ss", "nstat", "nft", "setpriv", "bpftool"];
/// Mount points and directories /init expects.
const DIRECTORIES: &[&str] = &["dev", "proc", "sys", "run", "tmp", "root"];

/// Writes `out_dir/initramfs.cpio` and returns its path.
pub fn build(kernel: &GuestKernel, binaries: &GuestBinaries, test_args: &[String], out_dir: &Path) -> Result<PathBuf> {
    let mut archive = Archive::default();
    for directory in DIRECTORIES {
        archive.directory(directory);
    }
    archive.symlink("var/run", "/run");
    archive.bytes("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644);
    archive.bytes("etc/group", "root:x:0:\n", 0o644);
    add_executable_with_libraries(&mut archive, Path::new(SHELL), "bin/sh")?;
    for tool in HOST_TOOLS {
        add_executable_with_libraries(&mut archive, &find_host_tool(tool)?, &format!("usr/sbin/{tool}"))?;
    }
    add_busybox(&mut archive)?;
    add_host_tree(&mut archive, &kernel.modules_root, "")?;
    archive.host_file(GUEST_NETDIAG, &binaries.netdiag, 0o755);
    for test in &binaries.tests {
        archive.host_file(&format!("{GUEST_TESTS_DIR}/{}", test.name), &test.path, 0o755);
    }
    let plan = InitPlan {
        release: &kernel.release,
        boot_modules: &kernel.boot_modules,
        test_binaries: binaries.tests.iter().map(|test| test.name.as_str()).collect(),
        libtest: binaries.libtest,
        test_args,
    };
    archive.bytes("init", init_script::render(&plan), 0o755);

    fs::create_dir_all(out_dir)?;
    let path = out_dir.join("initramfs.cpio");
    let mut out = BufWriter::new(File::create(&path)?);
    archive.write_to(&mut out).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Busybox plus a link per applet, except those the shell or a host tool provides.
fn add_busybox(archive: &mut Archive) -> Result<()> {
    archive.host_file(BUSYBOX, Path::new(BUSYBOX), 0o755);
    let applets = String::from_utf8(command_stdout(Command::new(BUSYBOX).arg("--list-full"))?)?;
    for applet_path in applets.lines() {
        let name = applet_path.rsplit('/').next().unwrap_or(applet_path);
        if name != "sh" && !HOST_TOOLS.contains(&name) && !archive.contains(applet_path) {
            archive.symlink(applet_path, BUSYBOX);
        }
    }
    Ok(())
}

fn find_host_tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    // Non-root PATHs often lack the sbin directories where iproute2 and nftables live.
    let directories = path.split(':').chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"]);
    directories
        .map(|directory| Path::new(directory).join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("{name} not found on the host (install iproute2, nftables, util-linux)"))
}

/// Copies a dynamically linked host executable and, at their host paths, the libraries and
/// loader that ldd lists for it.
fn add_executable_with_libraries(archive: &mut Archive, host_path: &Path, guest_path: &str) -> Result<()> {
    archive.host_file(guest_path, host_path, 0o755);
    let ldd_output = String::from_utf8(command_stdout(Command::new("ldd").arg(host_path))?)?;
    anyhow::ensure!(!ldd_output.contains("not found"), "{} misses libraries:\n{ldd_output}", host_path.display());
    for library in shared_libraries(&ldd_output) {
        archive.host_file(library, Path::new(library), 0o755);
    }
    Ok(())
}

/// The files ldd resolved: `libc.so.6 => /lib/.../libc.so.6 (0x..)` and the loader's
/// `/lib64/ld-linux-x86-64.so.2 (0x..)`; the vDSO has no file.
fn shared_libraries(ldd_output: &str) -> Vec<&str> {
    ldd_output.lines().filter_map(|line| line.split_whitespace().find(|word| word.starts_with('/'))).collect()
}

/// Adds a host directory's files under `guest_prefix`, keeping their permission bits.
fn add_host_tree(archive: &mut Archive, host_dir: &Path, guest_prefix: &str) -> Result<()> {
    for entry in fs::read_dir(host_dir).with_context(|| format!("reading {}", host_dir.display()))? {
        let entry = entry?;
        let guest_path = format!("{guest_prefix}/{}", entry.file_name().to_string_lossy());
        let metadata = entry.metadata()?;
        if metadata.is_dir() {
            archive.directory(&guest_path);
            add_host_tree(archive, &entry.path(), &guest_path)?;
        } else {
            archive.host_file(&guest_path, &entry.path(), metadata.permissions().mode() & 0o7777);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_resolved_libraries_and_the_loader_but_not_the_vdso() {
        let ldd_output = "\tlinux-vdso.so.1 (0x00007ffd)\n\
            \tlibmnl.so.0 => /lib/x86_64-linux-gnu/libmnl.so.0 (0x00007f29)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f29)\n";
        assert_eq!(shared_libraries(ldd_output), ["/lib/x86_64-linux-gnu/libmnl.so.0", "/lib64/ld-linux-x86-64.so.2"]);
    }
}
