//! `netdiag completions <target>`: a shell completion script or the man page, generated from the
//! command line's own clap definition so neither can drift from it.
use std::io::{self, Write};

use clap::ValueEnum;
use clap_complete::Shell;

/// What to generate.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Target {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
    /// The man page, in roff (`netdiag completions man | man -l -`).
    Man,
}

/// Writes the script or page for `target` to stdout.
pub fn print(target: Target, mut cmd: clap::Command) -> anyhow::Result<i32> {
    let name = cmd.get_name().to_string();
    let mut out = io::stdout().lock();
    let shell = match target {
        Target::Bash => Shell::Bash,
        Target::Zsh => Shell::Zsh,
        Target::Fish => Shell::Fish,
        Target::Elvish => Shell::Elvish,
        Target::Powershell => Shell::PowerShell,
        Target::Man => {
            clap_mangen::Man::new(cmd).render(&mut out)?;
            out.flush()?;
            return Ok(0);
        }
    };
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out.flush()?;
    Ok(0)
}
