//! Boots a kernel and initramfs in qemu, streaming the serial console to the terminal and a
//! log file, and kills the guest when it overruns its time.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub struct GuestRun {
    /// Everything the guest printed, with carriage returns removed.
    pub console: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

pub fn boot(kernel: &Path, initrd: &Path, log_path: &Path, timeout: Duration) -> Result<GuestRun> {
    let started = Instant::now();
    let log = File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut qemu = Command::new("qemu-system-x86_64")
        // TCG, not KVM: nested KVM hangs on the CI machines.
        .args(["-accel", "tcg", "-cpu", "max", "-m", "1536", "-smp", "2"])
        // The guest needs no NIC: its tests build their own networks from veth pairs.
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let console = qemu.stdout.take().context("qemu has no stdout")?;
    let streamer = thread::spawn(move || stream_console(console, log));
    let exit = wait_or_kill(&mut qemu, timeout)?;
    let console = streamer.join().expect("console streamer panicked")?;
    if let QemuExit::Exited(status) = exit
        && !status.success()
    {
        bail!("qemu failed: {status}");
    }
    Ok(GuestRun { console, timed_out: matches!(exit, QemuExit::Killed), elapsed: started.elapsed() })
}

/// Copies the console to the terminal and the log as it arrives, and returns all of it.
fn stream_console(mut console: impl Read, mut log: File) -> io::Result<String> {
    let mut everything = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = console.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        let mut terminal = io::stdout().lock();
        terminal.write_all(&chunk[..read])?;
        terminal.flush()?;
        log.write_all(&chunk[..read])?;
        everything.extend_from_slice(&chunk[..read]);
    }
    Ok(String::from_utf8_lossy(&everything).replace('\r', ""))
}

enum QemuExit {
    Exited(std::process::ExitStatus),
    Killed,
}

fn wait_or_kill(qemu: &mut Child, timeout: Duration) -> Result<QemuExit> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = qemu.try_wait()? {
            return Ok(QemuExit::Exited(status));
        }
        if Instant::now() >= deadline {
            // A new line: the console may have stopped mid-line.
            eprintln!("\nvmtest: guest still running after {} s, killing qemu", timeout.as_secs());
            qemu.kill()?;
            qemu.wait()?;
            return Ok(QemuExit::Killed);
        }
        thread::sleep(Duration::from_millis(200));
    }
}
