//! What the running kernel offers for attaching to its functions, checked before trying, and
//! short reasons for what it refused.
use std::collections::{HashMap, HashSet};

use aya::{programs::ProgramError, sys::SyscallError};

use super::catalogue::KernelFunction;
use crate::btf::Btf;

const KALLSYMS: &str = "/proc/kallsyms";
/// Functions ftrace can patch, which fentry/fexit need; unreadable on some kernels.
const FTRACE_FUNCTIONS: &str = "/sys/kernel/tracing/available_filter_functions";
/// The kprobe PMU, through which aya creates kprobes.
const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";

/// Facts about the catalogue's functions on the running kernel, read once.
pub struct KernelSupport {
    /// Function name → the symbols kallsyms has for it: the name itself and compiler-made
    /// copies (`tcp_send_dupack.isra.0`), whose arguments may differ.
    symbols: HashMap<String, Vec<String>>,
    /// `None` when the list is unreadable: then fentry is simply tried.
    traceable: Option<HashSet<String>>,
    kprobe_pmu: bool,
}

impl KernelSupport {
    pub fn read<'a>(functions: impl IntoIterator<Item = &'a str>) -> KernelSupport {
        let wanted: HashSet<&str> = functions.into_iter().collect();
        let mut symbols: HashMap<String, Vec<String>> = HashMap::new();
        let kallsyms = std::fs::read_to_string(KALLSYMS).unwrap_or_default();
        for symbol in column(&kallsyms, 2) {
            let base = symbol.split('.').next().unwrap_or(symbol);
            if wanted.contains(base) {
                symbols.entry(base.to_string()).or_default().push(symbol.to_string());
            }
        }
        let traceable = std::fs::read_to_string(FTRACE_FUNCTIONS).ok().map(|text| {
            column(&text, 0).filter(|name| wanted.contains(name)).map(str::to_string).collect()
        });
        KernelSupport { symbols, traceable, kprobe_pmu: std::path::Path::new(KPROBE_PMU).is_dir() }
    }

    /// Why an fentry/fexit program on `function` cannot work here, if we can tell before trying.
    pub fn check_trampoline(&self, btf: &Btf, function: &KernelFunction) -> Result<(), String> {
        if !btf.has_func(function.name) {
            return Err(format!(
                "no BTF for {} (inlined or renamed on this kernel)",
                function.name
            ));
        }
        check_signature(btf, function)?;
        self.check_symbol(function)?;
        match &self.traceable {
            Some(traceable) if !traceable.contains(function.name) => Err(format!(
                "{} is not traceable (absent from available_filter_functions)",
                function.name
            )),
            _ => Ok(()),
        }
    }

    /// Why a kprobe/kretprobe on `function` cannot work here, if we can tell before trying.
    pub fn check_kprobe(&self, btf: &Btf, function: &KernelFunction) -> Result<(), String> {
        if !self.kprobe_pmu {
            return Err("kprobe PMU not available on this kernel".into());
        }
        self.check_symbol(function)?;
        if !btf.has_func(function.name) {
            return Err(format!(
                "no BTF prototype for {}, so its arguments cannot be checked",
                function.name
            ));
        }
        check_signature(btf, function)
    }

    fn check_symbol(&self, function: &KernelFunction) -> Result<(), String> {
        let found = self.symbols.get(function.name).map(Vec::as_slice).unwrap_or_default();
        if found.iter().any(|symbol| symbol == function.name) {
            return Ok(());
        }
        match found.first() {
            Some(copy) => Err(format!(
                "{} not in {KALLSYMS}, only {copy} (arguments may differ)",
                function.name
            )),
            None => Err(format!("{} not in {KALLSYMS} (inlined or renamed)", function.name)),
        }
    }
}

/// The programs read arguments by position: a different prototype would make them read garbage.
fn check_signature(btf: &Btf, function: &KernelFunction) -> Result<(), String> {
    match btf.func_signature(function.name) {
        Some(actual) if signature_matches(function.signature, &actual) => Ok(()),
        Some(actual) => Err(format!("prototype differs: {actual}")),
        None => Err(format!("no BTF prototype for {}", function.name)),
    }
}

/// Marks an expected signature whose programs read only the parameters listed before it, as in
/// `int f(struct sock *, ...)`: later parameters may differ between kernels.
const MORE_PARAMETERS: &str = ", ...)";

/// Whether the prototype `actual` is the `expected` one, or starts with its parameters when
/// `expected` ends in [`MORE_PARAMETERS`].
fn signature_matches(expected: &str, actual: &str) -> bool {
    match expected.strip_suffix(MORE_PARAMETERS) {
        Some(prefix) => actual
            .strip_prefix(prefix)
            .is_some_and(|rest| rest == ")" || rest.starts_with(", ")),
        None => actual == expected,
    }
}

/// Column `index` of each line of a whitespace-separated table.
fn column(text: &str, index: usize) -> impl Iterator<Item = &str> {
    text.lines().filter_map(move |line| line.split_whitespace().nth(index))
}

/// A short reason for a refused load or attach, e.g. `load refused (EPERM)`.
pub fn refusal(stage: &str, err: &ProgramError) -> String {
    match err {
        ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            if std::env::var_os("NETDIAG_VERIFIER_LOG").is_some() {
                eprintln!("{log}");
            }
            match last_verifier_line(&log) {
                Some(line) if io_error.raw_os_error() != Some(libc::EPERM) => {
                    format!("verifier rejected the program ({}): {line}", errno_name(io_error))
                }
                _ => format!("load refused ({})", errno_name(io_error)),
            }
        }
        ProgramError::SyscallError(SyscallError { call, io_error }) => {
            format!("{stage} refused: {call} ({})", errno_name(io_error))
        }
        other => format!("{stage} failed: {other}"),
    }
}

/// The line that says what the verifier objected to: the last one before its statistics.
fn last_verifier_line(log: &str) -> Option<&str> {
    let statistics = |line: &str| {
        ["processed ", "verification time", "stack depth "].iter().any(|prefix| line.starts_with(prefix))
    };
    log.lines().map(str::trim).rfind(|line| !line.is_empty() && !statistics(line))
}

fn errno_name(err: &std::io::Error) -> String {
    let Some(code) = err.raw_os_error() else {
        return err.to_string();
    };
    let name = match code {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        // The kernel-internal ENOTSUPP, which BPF returns for unsupported attach types.
        524 => "ENOTSUPP",
        _ => return format!("errno {code}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_verifier_objection_not_its_statistics() {
        let log = "0: R1=ctx()\n1: (79) r2 = *(u64 *)(r1 +64)\ninvalid bpf_context access off=64 size=8\n\
                   processed 2 insns (limit 1000000)\nverification time 12 usec\n";
        assert_eq!(last_verifier_line(log), Some("invalid bpf_context access off=64 size=8"));
        assert_eq!(last_verifier_line(""), None);
    }

    #[test]
    fn names_errnos() {
        assert_eq!(errno_name(&std::io::Error::from_raw_os_error(libc::EPERM)), "EPERM");
        assert_eq!(errno_name(&std::io::Error::from_raw_os_error(524)), "ENOTSUPP");
        assert_eq!(errno_name(&std::io::Error::from_raw_os_error(200)), "errno 200");
    }

    #[test]
    fn a_signature_ending_in_dots_requires_only_its_leading_parameters() {
        let expected = "int f(struct sock *, struct sk_buff *, ...)";
        assert!(signature_matches(expected, "int f(struct sock *, struct sk_buff *)"));
        assert!(signature_matches(expected, "int f(struct sock *, struct sk_buff *, u32 *)"));
        assert!(!signature_matches(expected, "int f(struct sock *, struct sk_buff_head *)"));
        assert!(!signature_matches(expected, "int f(struct sock *)"));
        assert!(!signature_matches(expected, "void f(struct sock *, struct sk_buff *)"));
        let exact = "int f(struct sock *)";
        assert!(signature_matches(exact, exact));
        assert!(!signature_matches(exact, "int f(struct sock *, int)"));
    }

    #[test]
    fn a_renamed_copy_is_named_in_the_refusal() {
        let support = KernelSupport {
            symbols: HashMap::from([(
                "tcp_send_dupack".into(),
                vec!["tcp_send_dupack.isra.0".into()],
            )]),
            traceable: None,
            kprobe_pmu: true,
        };
        let function = KernelFunction { name: "tcp_send_dupack", signature: "" };
        let err = support.check_symbol(&function).unwrap_err();
        assert!(err.contains("only tcp_send_dupack.isra.0"), "{err}");
        let missing = KernelFunction { name: "tcp_nothing", signature: "" };
        assert!(support.check_symbol(&missing).unwrap_err().contains("inlined or renamed"));
    }
}
