//! Errors a user can act on: a missing privilege or kernel feature. `main` prints these as one
//! line and exits with status 2, without a backtrace.
use std::fmt;

#[derive(Debug)]
pub struct Unavailable {
    /// What is missing, e.g. "BPF needs root or CAP_BPF + CAP_PERFMON".
    pub what: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.what, self.fix)
    }
}

impl std::error::Error for Unavailable {}

pub fn unavailable(what: impl Into<String>, fix: impl Into<String>) -> anyhow::Error {
    Unavailable { what: what.into(), fix: fix.into() }.into()
}

/// A command line that names something that does not exist (a namespace...): one line, exit 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

/// Exit status for command-line usage errors (bad peer filter...), as clap uses.
pub const EXIT_USAGE: i32 = 2;
/// Exit status for a missing privilege or kernel feature.
pub const EXIT_UNAVAILABLE: i32 = 2;
