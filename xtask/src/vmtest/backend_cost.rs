//! `cargo xtask bench`'s per-backend rows: one Debian kernel booted with the `backend_cost`
//! binary (tests/src/bin/backend_cost.rs) in the place of the tests, its `BACKEND_COST` lines
//! parsed from the console, and per logical hook the median cost per run of each backend
//! (fentry, kprobe, tracepoint) with its ratio to the tracepoint's, as rows of the bench table.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use super::{binaries, boot, cargo_target_dir, results};

/// The guest binary, a bin target of the tests package.
const GUEST_BENCH: &str = "backend_cost";
/// What starts each line the guest binary prints for the host.
const LINE_PREFIX: &str = "BACKEND_COST ";
const BACKENDS: [&str; 3] = ["fentry", "kprobe", "tracepoint"];
/// Boot, the topologies and tear-down.
const GUEST_OVERHEAD: Duration = Duration::from_secs(120);
/// One round, all three backends, on an emulated (TCG) guest sharing the machine.
const ROUND_TIME: Duration = Duration::from_secs(100);

/// The rows for the bench table; a guest that could not measure yields one row saying why.
pub fn rows(series: &str, rounds: u32) -> Vec<Value> {
    measure(series, rounds).unwrap_or_else(|err| {
        eprintln!("bench: per-backend costs in guest {series} not measured: {err:#}");
        vec![json!({
            "measure": format!("guest {series}: cost per run by backend"),
            "contender": "—",
            "median": Value::Null,
            "note": format!("NOT MEASURED: {err:#}"),
        })]
    })
}

fn measure(series: &str, rounds: u32) -> Result<Vec<Value>> {
    let work_dir = cargo_target_dir()?.join("vmtest");
    let binaries = binaries::build_with_bench(GUEST_BENCH)?;
    let args = ["--rounds".to_string(), rounds.to_string()];
    let timeout = GUEST_OVERHEAD + ROUND_TIME * rounds;
    let guest = boot(series, &format!("bench-{series}"), &binaries, &args, timeout, &work_dir)?;
    let log = guest.log.display();
    if guest.run.timed_out {
        bail!("guest killed at the {} s timeout (console log in {log})", timeout.as_secs());
    }
    // The guest's own error, when it printed one, says most.
    let measurements = parse_console(&guest.run.console).map_err(|err| anyhow!("{err:#} (console log in {log})"))?;
    let outcome = results::parse_console(&guest.run.console);
    match outcome.steps.iter().find(|step| step.name == GUEST_BENCH).and_then(|step| step.exit_code) {
        Some(0) => {}
        Some(code) => bail!("{GUEST_BENCH} exited with {code} (console log in {log})"),
        None => bail!("{GUEST_BENCH} never finished (console log in {log})"),
    }
    if measurements.is_empty() {
        bail!("the guest printed no measurement (console log in {log})");
    }
    Ok(table_rows(series, &guest.release, &measurements))
}

/// One logical hook under one forced backend in one round, as the guest printed it.
#[derive(Debug, Clone, PartialEq)]
struct Measurement {
    backend: String,
    hook: String,
    /// What served the hook (`fexit`, `kretprobe`, `raw_tracepoint`…), `none` if nothing did.
    mechanism: String,
    /// Why nothing served it.
    why: Option<String>,
    programs: Vec<ProgramRuns>,
}

#[derive(Debug, Clone, PartialEq)]
struct ProgramRuns {
    run_count: u64,
    run_time_ns: u64,
}

impl Measurement {
    /// Nanoseconds per call of the hook: each program's run time over its run count, summed (a
    /// kprobe and its kretprobe both run once per call). None if no program ran.
    fn ns_per_run(&self) -> Option<f64> {
        let ran: Vec<&ProgramRuns> = self.programs.iter().filter(|p| p.run_count > 0).collect();
        (!ran.is_empty()).then(|| ran.iter().map(|p| p.run_time_ns as f64 / p.run_count as f64).sum())
    }

    fn runs(&self) -> u64 {
        self.programs.iter().map(|p| p.run_count).max().unwrap_or(0)
    }

    fn total_ns(&self) -> u64 {
        self.programs.iter().map(|p| p.run_time_ns).sum()
    }
}

/// The measurements in a guest's console; the guest's own error if it reported one.
fn parse_console(console: &str) -> Result<Vec<Measurement>> {
    let mut measurements = Vec::new();
    for line in console.lines() {
        // Firmware escape sequences can precede the first line.
        let Some(at) = line.find(LINE_PREFIX) else { continue };
        let text = &line[at + LINE_PREFIX.len()..];
        let value: Value = serde_json::from_str(text).with_context(|| format!("unreadable line {text:?}"))?;
        if let Some(error) = value["error"].as_str() {
            bail!("the guest measurement failed: {error}");
        }
        measurements.push(measurement_of(&value).with_context(|| format!("incomplete line {text:?}"))?);
    }
    Ok(measurements)
}

fn measurement_of(value: &Value) -> Option<Measurement> {
    let text = |key: &str| value[key].as_str().map(str::to_string);
    let programs = value["programs"].as_array()?.iter().map(|program| {
        Some(ProgramRuns { run_count: program["run_count"].as_u64()?, run_time_ns: program["run_time_ns"].as_u64()? })
    });
    Some(Measurement {
        backend: text("backend")?,
        hook: text("hook")?,
        mechanism: text("mechanism")?,
        why: text("why"),
        programs: programs.collect::<Option<_>>()?,
    })
}

/// What one backend did for one hook over all rounds.
#[derive(Debug, PartialEq)]
enum Cell {
    /// Per round: nanoseconds per run, runs, nanoseconds in all.
    Measured { costs: Vec<f64>, runs: Vec<f64>, totals_ns: Vec<f64>, mechanism: String },
    Missing { why: String },
}

/// The backend family of a mechanism, as the guest's forced backends name them.
fn family_of(mechanism: &str) -> Option<&'static str> {
    match mechanism {
        "fentry" | "fexit" => Some("fentry"),
        "kprobe" | "kretprobe" => Some("kprobe"),
        "tracepoint" | "raw_tracepoint" | "tp_btf" => Some("tracepoint"),
        _ => None,
    }
}

/// What `backend`, forced, did for one hook. A hook that exists only as tracepoints stays on
/// them whatever the backend: its cost counts under the tracepoint only.
fn cell(backend: &str, measurements: &[&Measurement]) -> Cell {
    let ran: Vec<&&Measurement> = measurements
        .iter()
        .filter(|m| family_of(&m.mechanism) == Some(backend) && m.ns_per_run().is_some())
        .collect();
    if let Some(first) = ran.first() {
        return Cell::Measured {
            costs: ran.iter().filter_map(|m| m.ns_per_run()).collect(),
            runs: ran.iter().map(|m| m.runs() as f64).collect(),
            totals_ns: ran.iter().map(|m| m.total_ns() as f64).collect(),
            mechanism: first.mechanism.clone(),
        };
    }
    let why = match measurements.first() {
        None => "not measured".to_string(),
        Some(Measurement { why: Some(why), .. }) => why.clone(),
        Some(m) if family_of(&m.mechanism) != Some(backend) => {
            format!("{backend}: no {backend} program; {} serves it whatever the backend", m.mechanism)
        }
        Some(m) => format!("{}: attached, but the bench traffic never ran it", m.mechanism),
    };
    Cell::Missing { why }
}

/// Per hook, in the order the guest listed them, a row per backend.
fn table_rows(series: &str, release: &str, measurements: &[Measurement]) -> Vec<Value> {
    let mut hooks: Vec<&str> = Vec::new();
    for m in measurements {
        if !hooks.contains(&m.hook.as_str()) {
            hooks.push(&m.hook);
        }
    }
    let mut rows = Vec::new();
    for hook in hooks {
        let cells = BACKENDS.map(|backend| {
            let of_backend: Vec<&Measurement> =
                measurements.iter().filter(|m| m.hook == hook && m.backend == backend).collect();
            cell(backend, &of_backend)
        });
        let tracepoint = match &cells[2] {
            Cell::Measured { costs, .. } => Some(median(costs)),
            Cell::Missing { .. } => None,
        };
        for (backend, cell) in BACKENDS.iter().zip(&cells) {
            let mut row = json!({
                "measure": format!("guest {series}, ns per run (bpf_stats): {hook}"),
                "contender": backend,
                "guest_kernel": release,
                "target": "",
            });
            match cell {
                Cell::Measured { costs, runs, totals_ns, mechanism } => {
                    let cost = median(costs);
                    row["median"] = round1(cost).into();
                    row["min"] = round1(costs.iter().copied().fold(f64::INFINITY, f64::min)).into();
                    row["max"] = round1(costs.iter().copied().fold(f64::NEG_INFINITY, f64::max)).into();
                    // Per run is per call of a function but per packet of a tracepoint: the time
                    // per round says what the same traffic cost in all.
                    let mut note = format!(
                        "{mechanism}, {:.0} runs/round, {:.0} µs/round",
                        median(runs),
                        median(totals_ns) / 1000.0
                    );
                    if let Some(tracepoint) = tracepoint.filter(|_| *backend != "tracepoint") {
                        row["ratio_to_tracepoint"] = ((cost / tracepoint * 1000.0).round() / 1000.0).into();
                        note += "; ratio to tracepoint";
                    }
                    row["note"] = note.into();
                }
                Cell::Missing { why } => {
                    row["median"] = Value::Null;
                    row["note"] = format!("— {why}").into();
                }
            }
            rows.push(row);
        }
    }
    rows
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(round: u64, backend: &str, hook: &str, mechanism: &str, programs: &[(u64, u64)]) -> String {
        let programs: Vec<Value> =
            programs.iter().map(|(count, ns)| json!({ "name": "p", "run_count": count, "run_time_ns": ns })).collect();
        let line = json!({ "round": round, "backend": backend, "hook": hook, "mechanism": mechanism, "programs": programs });
        format!("{LINE_PREFIX}{line}\n")
    }

    fn refused(round: u64, backend: &str, hook: &str, why: &str) -> String {
        let line = json!({ "round": round, "backend": backend, "hook": hook, "mechanism": "none", "programs": [], "why": why });
        format!("{LINE_PREFIX}{line}\n")
    }

    #[test]
    fn finds_lines_among_console_noise() {
        let console = format!(
            "\x1bc\x1b[2J{}VMTEST begin backend_cost\n[   3.1] random: crng init done\n{}VMTEST end backend_cost exit=0\n",
            line(1, "fentry", "conn_request", "fentry", &[(4, 400)]),
            refused(1, "fentry", "paws_checks", "fentry: no fentry equivalent implemented"),
        );
        let measurements = parse_console(&console).unwrap();
        assert_eq!(measurements.len(), 2);
        assert_eq!(measurements[0].ns_per_run(), Some(100.0));
        assert_eq!(measurements[1].why.as_deref(), Some("fentry: no fentry equivalent implemented"));
        assert_eq!(measurements[1].ns_per_run(), None);
    }

    #[test]
    fn the_guest_error_and_broken_lines_are_errors() {
        let failed = format!("{LINE_PREFIX}{{\"error\": \"kprobe in round 2: no listener\"}}\n");
        let err = parse_console(&failed).unwrap_err();
        assert!(format!("{err:#}").contains("kprobe in round 2: no listener"), "{err:#}");
        assert!(parse_console(&format!("{LINE_PREFIX}{{\"round\": 1, \"backe")).is_err());
        assert!(parse_console(&format!("{LINE_PREFIX}{{\"round\": 1, \"backend\": \"fentry\"}}")).is_err());
    }

    #[test]
    fn a_kretprobe_pair_costs_the_sum_of_both_programs_per_call() {
        let console = line(1, "kprobe", "oow_limiter", "kretprobe", &[(10, 1000), (10, 3000)]);
        let measurements = parse_console(&console).unwrap();
        assert_eq!(measurements[0].ns_per_run(), Some(400.0));
        assert_eq!(measurements[0].runs(), 10);
    }

    #[test]
    fn medians_over_rounds_by_serving_backend_with_ratios_to_the_tracepoint_and_reasons_for_the_rest() {
        let mut console = String::new();
        for (round, fentry_ns, tracepoint_ns) in [(1, 100, 400), (2, 300, 600), (3, 200, 500)] {
            console += &line(round, "fentry", "conn_request", "fentry", &[(1, fentry_ns)]);
            console += &refused(round, "kprobe", "conn_request", "kprobe: kprobe PMU not available on this kernel");
            console += &line(round, "tracepoint", "conn_request", "tracepoint", &[(2, 2 * tracepoint_ns)]);
        }
        console += &line(1, "fentry", "dupack_sent", "fentry", &[(0, 0)]);
        console += &line(1, "fentry", "synack_sent", "tracepoint", &[(10, 9000)]);
        console += &line(1, "tracepoint", "synack_sent", "tracepoint", &[(10, 7000)]);
        let rows = table_rows("6.12", "6.12.117+deb12-cloud-amd64", &parse_console(&console).unwrap());
        let cells: Vec<_> = rows
            .iter()
            .map(|row| {
                (
                    row["measure"].as_str().unwrap(),
                    row["contender"].as_str().unwrap(),
                    row["median"].as_f64(),
                    row["ratio_to_tracepoint"].as_f64(),
                    row["note"].as_str().unwrap(),
                )
            })
            .collect();
        let conn_request = "guest 6.12, ns per run (bpf_stats): conn_request";
        let dupack_sent = "guest 6.12, ns per run (bpf_stats): dupack_sent";
        let synack_sent = "guest 6.12, ns per run (bpf_stats): synack_sent";
        assert_eq!(
            cells,
            [
                (conn_request, "fentry", Some(200.0), Some(0.4), "fentry, 1 runs/round, 0 µs/round; ratio to tracepoint"),
                (conn_request, "kprobe", None, None, "— kprobe: kprobe PMU not available on this kernel"),
                (conn_request, "tracepoint", Some(500.0), None, "tracepoint, 2 runs/round, 1 µs/round"),
                (dupack_sent, "fentry", None, None, "— fentry: attached, but the bench traffic never ran it"),
                (dupack_sent, "kprobe", None, None, "— not measured"),
                (dupack_sent, "tracepoint", None, None, "— not measured"),
                (synack_sent, "fentry", None, None, "— fentry: no fentry program; tracepoint serves it whatever the backend"),
                (synack_sent, "kprobe", None, None, "— not measured"),
                (synack_sent, "tracepoint", Some(700.0), None, "tracepoint, 10 runs/round, 7 µs/round"),
            ]
        );
        assert_eq!((rows[0]["min"].as_f64(), rows[0]["max"].as_f64()), (Some(100.0), Some(300.0)));
        assert_eq!(rows[0]["guest_kernel"], "6.12.117+deb12-cloud-amd64");
    }
}
