//! The verdict on each guest and the kernel × check table printed at the end.

use std::time::Duration;

use super::results::{GuestOutcome, Outcome};

pub struct KernelReport {
    pub series: String,
    pub release: String,
    /// Boot plus all checks, as seen from the host.
    pub elapsed: Duration,
    pub timed_out: bool,
    pub guest: GuestOutcome,
}

impl KernelReport {
    /// Everything that makes this guest's run a failure; empty when it passed.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let kernel = &self.series;
        if self.timed_out {
            problems.push(format!("{kernel}: guest killed at the timeout"));
        } else if !self.guest.finished {
            problems.push(format!("{kernel}: guest stopped before /init finished (see its log)"));
        }
        for step in &self.guest.steps {
            match step.exit_code {
                Some(0) => {}
                Some(code) => problems.push(format!("{kernel}: {} exited with {code}", step.name)),
                None => problems.push(format!("{kernel}: {} never finished", step.name)),
            }
            let failed = step.tests.iter().filter(|test| test.outcome == Outcome::Failed);
            problems.extend(failed.map(|test| format!("{kernel}: {} {} FAILED", step.name, test.name)));
        }
        if self.guest.tests_run() == 0 {
            problems.push(format!("{kernel}: no test ran"));
        }
        problems
    }
}

pub fn print_summary(reports: &[KernelReport]) {
    println!("\nvmtest summary");
    for report in reports {
        let verdict = if report.problems().is_empty() { "ok" } else { "FAILED" };
        println!(
            "  {:<6} {:<34} {:>5.0} s  {} tests run  {verdict}",
            report.series,
            report.release,
            report.elapsed.as_secs_f64(),
            report.guest.tests_run()
        );
    }
    let rows = check_rows(reports);
    let width = rows.iter().map(|(check, _)| check.len()).max().unwrap_or(0).max("check".len());
    print!("\n  {:<width$}", "check");
    for report in reports {
        print!("  {:<8}", report.series);
    }
    println!();
    for (check, cells) in rows {
        print!("  {check:<width$}");
        for cell in cells {
            print!("  {cell:<8}");
        }
        println!();
    }
}

/// One row per step and per harness test, in the order first seen, with one cell per kernel.
fn check_rows(reports: &[KernelReport]) -> Vec<(String, Vec<String>)> {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    for (column, report) in reports.iter().enumerate() {
        for step in &report.guest.steps {
            let step_cell = match step.exit_code {
                Some(0) => "ok".to_string(),
                Some(code) => format!("exit={code}"),
                None => "unfinished".to_string(),
            };
            set_cell(&mut rows, &step.name, column, reports.len(), step_cell);
            for test in &step.tests {
                let test_cell = match test.outcome {
                    Outcome::Passed => "ok",
                    Outcome::Failed => "FAILED",
                    Outcome::Ignored => "ignored",
                };
                let row = format!("{} {}", step.name, test.name);
                set_cell(&mut rows, &row, column, reports.len(), test_cell.to_string());
            }
        }
    }
    rows
}

fn set_cell(rows: &mut Vec<(String, Vec<String>)>, check: &str, column: usize, columns: usize, cell: String) {
    let index = match rows.iter().position(|(name, _)| name == check) {
        Some(index) => index,
        None => {
            rows.push((check.to_string(), vec!["-".to_string(); columns]));
            rows.len() - 1
        }
    };
    rows[index].1[column] = cell;
}

#[cfg(test)]
mod tests {
    use super::super::results::parse_console;
    use super::*;

    fn report(series: &str, console: &str) -> KernelReport {
        KernelReport {
            series: series.to_string(),
            release: format!("{series}.0-cloud-amd64"),
            elapsed: Duration::from_secs(60),
            timed_out: false,
            guest: parse_console(console),
        }
    }

    #[test]
    fn a_clean_run_has_no_problems() {
        let clean = report("6.1", "VMTEST begin t\ntest a ... ok\nVMTEST end t exit=0\nVMTEST done\n");
        assert!(clean.problems().is_empty());
    }

    #[test]
    fn failures_exits_unfinished_guests_and_empty_runs_are_problems() {
        let failed = report("6.1", "VMTEST begin t\ntest a ... FAILED\nVMTEST end t exit=101\nVMTEST done\n");
        assert_eq!(failed.problems(), ["6.1: t exited with 101", "6.1: t a FAILED"]);
        let died = report("6.12", "VMTEST begin t\n");
        assert_eq!(
            died.problems(),
            ["6.12: guest stopped before /init finished (see its log)", "6.12: t never finished", "6.12: no test ran"]
        );
    }

    #[test]
    fn rows_cover_every_kernel_with_dashes_for_missing_checks() {
        let reports = [
            report("6.1", "VMTEST begin t\ntest a ... ok\nVMTEST end t exit=0\nVMTEST done\n"),
            report("6.12", "VMTEST begin t\ntest b ... ignored\nVMTEST end t exit=0\nVMTEST done\n"),
        ];
        let rows = check_rows(&reports);
        let expected = [("t", ["ok", "ok"]), ("t a", ["ok", "-"]), ("t b", ["-", "ignored"])];
        assert_eq!(rows.len(), expected.len());
        for ((check, cells), (expected_check, expected_cells)) in rows.iter().zip(expected) {
            assert_eq!(check, expected_check);
            assert_eq!(cells, &expected_cells);
        }
    }
}
