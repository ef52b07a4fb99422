//! `netdiag completions <shell|man>`: the generated scripts load in their shell and offer every
//! subcommand, and the man page renders. No root needed.
use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use netdiag_tests::netdiag_bin;

const SUBCOMMANDS: [&str; 6] = ["diagnose", "counters", "explain", "check", "hooks", "completions"];

fn generate(target: &str) -> String {
    let out = Command::new(netdiag_bin()).args(["completions", target]).output().unwrap();
    assert!(out.status.success(), "netdiag completions {target}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.trim().is_empty(), "netdiag completions {target} printed nothing");
    text
}

/// Runs `program args` with `input` on stdin.
fn run_with_stdin(program: &str, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn installed(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program}")]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn the_bash_completion_parses_registers_and_offers_every_subcommand() {
    let script = generate("bash");

    let syntax = run_with_stdin("bash", &["-n"], &script);
    assert!(syntax.status.success(), "bash -n: {}", String::from_utf8_lossy(&syntax.stderr));

    // Source it, check it registered for `netdiag`, then ask it to complete `netdiag <TAB>`.
    let probe = r#"
        eval "$NETDIAG_COMPLETION" || exit 10
        complete -p netdiag || exit 11
        COMP_WORDS=(netdiag "")
        COMP_CWORD=1
        COMP_LINE="netdiag "
        COMP_POINT=${#COMP_LINE}
        _netdiag netdiag "" netdiag || exit 12
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let out = Command::new("bash").args(["--norc", "--noprofile", "-c", probe]).env("NETDIAG_COMPLETION", &script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sourcing the bash completion failed ({}): {stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    let mut lines = stdout.lines();
    let registration = lines.next().unwrap_or_default();
    assert!(registration.starts_with("complete ") && registration.ends_with(" netdiag"), "{registration}");
    let offered: Vec<&str> = lines.collect();
    for sub in SUBCOMMANDS {
        assert!(offered.contains(&sub), "`netdiag <TAB>` does not offer {sub}: {offered:?}");
    }
}

#[test]
fn the_bash_completion_offers_the_completion_targets() {
    let script = generate("bash");
    let probe = r#"
        eval "$NETDIAG_COMPLETION" || exit 10
        COMP_WORDS=(netdiag completions "")
        COMP_CWORD=2
        COMP_LINE="netdiag completions "
        COMP_POINT=${#COMP_LINE}
        _netdiag netdiag "" completions || exit 12
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let out = Command::new("bash").args(["--norc", "--noprofile", "-c", probe]).env("NETDIAG_COMPLETION", &script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let offered: Vec<&str> = stdout.lines().collect();
    for target in ["bash", "zsh", "fish", "elvish", "powershell", "man"] {
        assert!(offered.contains(&target), "`netdiag completions <TAB>` does not offer {target}: {offered:?}");
    }
}

#[test]
fn the_other_shells_get_a_script_naming_the_subcommands() {
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = generate(shell);
        for sub in ["diagnose", "counters", "explain", "check", "hooks"] {
            assert!(script.contains(sub), "the {shell} completion does not mention {sub}");
        }
    }
}

#[test]
fn the_man_page_renders_and_lists_every_subcommand() {
    let page = generate("man");
    assert!(page.lines().any(|l| l.starts_with(".TH netdiag 1")), "no .TH header:\n{page}");

    let rendered = if installed("groff") {
        // -ww: every warning; -z: format but print nothing, for the warnings check.
        let check = run_with_stdin("groff", &["-man", "-Tutf8", "-ww", "-z"], &page);
        let warnings = String::from_utf8_lossy(&check.stderr);
        assert!(check.status.success() && warnings.trim().is_empty(), "groff: {warnings}");
        let out = run_with_stdin("groff", &["-man", "-Tutf8"], &page);
        assert!(out.status.success(), "groff: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else if installed("man") {
        let out = run_with_stdin("man", &["-l", "-"], &page);
        assert!(out.status.success(), "man -l: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        eprintln!("neither groff nor man is installed: checking the roff source only");
        page.clone()
    };
    // Rendered output may embolden with overstrikes (x\bx) or SGR escapes: strip both.
    let plain = strip_formatting(&rendered);
    for heading in ["NAME", "SYNOPSIS", "SUBCOMMANDS"] {
        assert!(plain.contains(heading), "the man page has no {heading} section:\n{plain}");
    }
    for sub in SUBCOMMANDS {
        assert!(plain.contains(&format!("netdiag-{sub}")), "the man page does not list {sub}:\n{plain}");
    }
}

#[test]
fn an_unknown_target_is_a_usage_error() {
    let out = Command::new(netdiag_bin()).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "printed a script for an unknown shell");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid value 'tcsh'") && err.contains("possible values"), "{err}");
}

fn strip_formatting(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{8}' => {
                out.pop();
            }
            '\u{1b}' => {
                // CSI: ESC [ params final-byte
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}
