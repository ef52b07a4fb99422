//! Runs test commands with their output streamed as usual, adds up cargo's `test result:`
//! lines, and ends with one summary line for the whole run.
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// Unit, binary and integration test targets; doc-tests are left out (there are none to run).
pub const TEST_TARGETS: &[&str] = &["--lib", "--bins", "--tests"];

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Tally {
    pub fn run(&mut self, cmd: &mut Command) -> Result<()> {
        let shown = format!("{cmd:?}");
        let mut child = cmd.stdout(Stdio::piped()).spawn().with_context(|| format!("cannot start {shown}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            self.add_line(&line);
        }
        let status = child.wait()?;
        if !status.success() {
            self.print_line();
            bail!("{shown} failed: {status}");
        }
        Ok(())
    }

    /// Adds a `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else { return };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else { continue };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }

    pub fn print_line(&self) {
        println!("\ntests: {} passed, {} failed, {} skipped", self.passed, self.failed, self.ignored);
    }

    pub fn finish(self) -> Result<()> {
        self.print_line();
        if self.passed == 0 {
            bail!("no test ran");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_up_cargo_result_lines() {
        let mut tally = Tally::default();
        tally.add_line("test result: ok. 51 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 3.22s");
        tally.add_line("test result: FAILED. 4 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out");
        tally.add_line("test something ... ok");
        assert_eq!(tally, Tally { passed: 55, failed: 1, ignored: 2 });
    }
}
