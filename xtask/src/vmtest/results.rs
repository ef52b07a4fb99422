//! Parses a guest's console: the `VMTEST` markers /init prints around each check, and the
//! `test NAME ... ok|FAILED|ignored` lines of the Rust test harness between them.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Ignored,
}

#[derive(Debug, PartialEq)]
pub struct TestCase {
    pub name: String,
    pub outcome: Outcome,
}

/// One check /init ran: a test binary, or a standalone command such as the netns smoke test.
#[derive(Debug, PartialEq)]
pub struct Step {
    pub name: String,
    /// None if the step never reported its end: the guest died or hung inside it.
    pub exit_code: Option<i32>,
    pub tests: Vec<TestCase>,
}

#[derive(Debug, Default, PartialEq)]
pub struct GuestOutcome {
    pub steps: Vec<Step>,
    /// /init reached its end.
    pub finished: bool,
}

impl GuestOutcome {
    /// Harness tests that ran, that is passed or failed.
    pub fn tests_run(&self) -> usize {
        let ran = |test: &&TestCase| test.outcome != Outcome::Ignored;
        self.steps.iter().map(|step| step.tests.iter().filter(ran).count()).sum()
    }
}

pub fn parse_console(console: &str) -> GuestOutcome {
    let mut outcome = GuestOutcome::default();
    // A test whose result word has not been seen yet: output of child processes, which the
    // harness does not capture, can come between `test NAME ... ` and `ok`.
    let mut pending_test: Option<String> = None;
    for line in console.lines().map(str::trim_end) {
        // Firmware escape sequences can precede the first marker on its line.
        if let Some(at) = line.find("VMTEST ") {
            apply_marker(&mut outcome, &line[at + "VMTEST ".len()..]);
            pending_test = None;
            continue;
        }
        let Some(step) = outcome.steps.last_mut().filter(|step| step.exit_code.is_none()) else { continue };
        let result = match line.strip_prefix("test ").and_then(|test| test.split_once(" ... ")) {
            Some((name, rest)) => {
                pending_test = Some(name.to_string());
                result_of(rest)
            }
            None => result_of(line),
        };
        if let Some(outcome) = result
            && let Some(name) = pending_test.take()
        {
            step.tests.push(TestCase { name, outcome });
        }
    }
    outcome
}

/// `begin NAME`, `end NAME exit=CODE` or `done`.
fn apply_marker(outcome: &mut GuestOutcome, marker: &str) {
    let words: Vec<&str> = marker.split_whitespace().collect();
    match words.as_slice() {
        ["begin", name] => outcome.steps.push(Step { name: name.to_string(), exit_code: None, tests: Vec::new() }),
        ["end", name, exit] => {
            if let Some(step) = outcome.steps.iter_mut().rev().find(|step| step.name == *name) {
                step.exit_code = exit.strip_prefix("exit=").and_then(|code| code.parse().ok());
            }
        }
        ["done"] => outcome.finished = true,
        _ => {}
    }
}

/// The harness's result word: `ok`, `FAILED`, `ignored` or `ignored, reason`.
fn result_of(text: &str) -> Option<Outcome> {
    match text {
        "ok" => Some(Outcome::Passed),
        "FAILED" => Some(Outcome::Failed),
        ignored if ignored.starts_with("ignored") => Some(Outcome::Ignored),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
[    0.000000] Linux version 6.1.0-56-cloud-amd64
vmtest: modprobe nft_fib failed\r
VMTEST begin smoke-netns
PING 198.51.100.2 (198.51.100.2): 56 data bytes
VMTEST end smoke-netns exit=0
VMTEST begin paws\r

running 4 tests
test paws::names_the_peer ... ok
test paws::survives_netns_removal ... FAILED
test paws::slow ... ignored
test paws::kprobe_only ... ignored, needs kprobes
test result: FAILED. 1 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 1.20s
VMTEST end paws exit=101
VMTEST done
";

    fn test(name: &str, outcome: Outcome) -> TestCase {
        TestCase { name: name.to_string(), outcome }
    }

    #[test]
    fn attributes_harness_lines_to_the_running_step() {
        let outcome = parse_console(CONSOLE);
        assert!(outcome.finished);
        assert_eq!(
            outcome.steps,
            [
                Step { name: "smoke-netns".into(), exit_code: Some(0), tests: vec![] },
                Step {
                    name: "paws".into(),
                    exit_code: Some(101),
                    tests: vec![
                        test("paws::names_the_peer", Outcome::Passed),
                        test("paws::survives_netns_removal", Outcome::Failed),
                        test("paws::slow", Outcome::Ignored),
                        test("paws::kprobe_only", Outcome::Ignored),
                    ],
                },
            ]
        );
        assert_eq!(outcome.tests_run(), 2);
    }

    #[test]
    fn a_guest_that_dies_mid_step_is_unfinished_with_an_open_step() {
        let console = "VMTEST begin paws\ntest paws::a ... ok\n[   9.1] Kernel panic - not syncing\n";
        let outcome = parse_console(console);
        assert!(!outcome.finished);
        assert_eq!(outcome.steps[0].exit_code, None);
        assert_eq!(outcome.steps[0].tests, [test("paws::a", Outcome::Passed)]);
    }

    #[test]
    fn ignores_harness_lines_outside_steps_and_malformed_markers() {
        let console = "test stray ... ok\nVMTEST end nothing exit=0\nVMTEST begin\nVMTEST bogus x y z\n";
        assert_eq!(parse_console(console), GuestOutcome::default());
    }

    #[test]
    fn finds_results_printed_after_child_process_output() {
        let console = "\x1bc\x1b[2JVMTEST begin paws\n\
            test paws::runs_netdiag ... 152456\n\
            ok\n\
            test paws::loads_rules ... /dev/stdin:1: Error: syntax error\n\
            table ip t { chain c { } }\n\
            FAILED\n\
            test paws::quiet ... ok\n\
            VMTEST end paws exit=101\n";
        let outcome = parse_console(console);
        assert_eq!(
            outcome.steps[0].tests,
            [
                test("paws::runs_netdiag", Outcome::Passed),
                test("paws::loads_rules", Outcome::Failed),
                test("paws::quiet", Outcome::Passed),
            ]
        );
    }

    #[test]
    fn a_test_still_running_when_output_stops_is_not_counted() {
        let console = "VMTEST begin paws\ntest paws::hangs ... ";
        assert_eq!(parse_console(console).tests_run(), 0);
    }
}
