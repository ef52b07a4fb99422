//! `netdiag counters`: what the kernel's TCP counters did over an interval, per namespace,
//! grouped by what they mean and explained in one line each. Reads `/proc`, traces nothing.
use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::{
    in_namespace,
    knowledge::{self, Group},
    select_namespaces,
};
use crate::{
    counters::{self, Counters},
    error::EXIT_USAGE,
    netns::Netns,
};

/// Printed on stderr once the first reading is taken; scripts and tests wait for it.
pub const COUNTING_LINE: &str = "netdiag: counting";

/// The header of every text sample says this tool is not tracing anything here.
const NO_TRACING: &str = "counters only: no tracing";

#[derive(clap::Args, Debug)]
pub struct CountersArgs {
    /// Namespace to read: `root`, an `ip netns` name, or `all` for root and every `ip netns` one.
    #[arg(long, value_name = "NAME|all", default_value = "root")]
    pub netns: String,
    /// Seconds per sample.
    #[arg(long, value_name = "S", default_value_t = 1.0, value_parser = parse_seconds)]
    pub interval: f64,
    /// Number of samples.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// One JSON document per sample on stdout, one per line.
    #[arg(long)]
    pub json: bool,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(s),
        _ => Err(format!("`{text}` is not a number of seconds between 0 and 86400")),
    }
}

/// Prints `count` samples of the TCP counter deltas; exit status 0, or 2 for an unknown namespace.
pub async fn run(args: CountersArgs) -> Result<i32> {
    let Some(namespaces) = select_namespaces(&args.netns)? else { return Ok(EXIT_USAGE) };
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(args.interval));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut previous = read_all(namespaces).await?;
    eprintln!("{COUNTING_LINE} {} namespace(s), {} sample(s) of {} s", previous.len(), args.count, args.interval);
    for sample in 1..=args.count {
        ticker.tick().await;
        let current = read_all(previous.iter().map(|(ns, _)| ns.clone()).collect()).await?;
        let rises = sample_rises(&previous, &current);
        if args.json {
            println!("{}", serde_json::to_string(&JsonSample::new(args.interval, &rises))?);
        } else {
            print!("{}", text_sample(args.interval, sample, args.count, &rises));
        }
        previous = current;
    }
    Ok(0)
}

/// TCP counters (`Tcp*`, `TcpExt*`) of each namespace, read off the async runtime. A named
/// namespace deleted since it was listed is left out, with a note.
async fn read_all(namespaces: Vec<Netns>) -> Result<Vec<(Netns, Counters)>> {
    tokio::task::spawn_blocking(move || {
        let mut readings = Vec::new();
        for ns in namespaces {
            match in_namespace(&ns, tcp_counters_here) {
                Ok(counters) => readings.push((ns, counters)),
                Err(_) if !ns.path.exists() => eprintln!("netdiag: namespace {} is gone", ns.name),
                Err(err) => return Err(err.context(format!("read the counters of namespace {}", ns.name))),
            }
        }
        Ok(readings)
    })
    .await
    .context("counter reader")?
}

fn tcp_counters_here() -> Result<Counters> {
    let mut all = counters::read_current_thread()?;
    all.retain(|name, _| name.starts_with("Tcp"));
    Ok(all)
}

/// One counter that rose during a sample.
#[derive(Debug, PartialEq, Serialize)]
struct Rise {
    #[serde(skip)]
    name: String,
    delta: u64,
    group: Group,
    meaning: &'static str,
}

/// Namespace name → the counters that rose there, in group order, biggest first.
type SampleRises = Vec<(String, Vec<Rise>)>;

fn sample_rises(previous: &[(Netns, Counters)], current: &[(Netns, Counters)]) -> SampleRises {
    let no_baseline = Counters::new();
    current
        .iter()
        .map(|(ns, now)| {
            let before = previous.iter().find(|(seen, _)| seen.inode == ns.inode).map_or(&no_baseline, |(_, c)| c);
            (ns.name.clone(), explain_rises(counters::delta(before, now)))
        })
        .collect()
}

fn explain_rises(delta: Counters) -> Vec<Rise> {
    let mut rises: Vec<Rise> = delta
        .into_iter()
        .map(|(name, delta)| {
            let (group, meaning) = knowledge::describe_counter(&name);
            Rise { name, delta, group, meaning }
        })
        .collect();
    rises.sort_by(|a, b| a.group.cmp(&b.group).then(b.delta.cmp(&a.delta)).then(a.name.cmp(&b.name)));
    rises
}

/// `{"interval_s":1.0,"namespaces":{"root":{"TcpExtPAWSEstab":{"delta":3,"group":"paws","meaning":"..."}}}}`
#[derive(Serialize)]
struct JsonSample<'a> {
    interval_s: f64,
    namespaces: BTreeMap<&'a str, BTreeMap<&'a str, &'a Rise>>,
}

impl<'a> JsonSample<'a> {
    fn new(interval_s: f64, rises: &'a SampleRises) -> JsonSample<'a> {
        let namespaces = rises
            .iter()
            .map(|(ns, rows)| (ns.as_str(), rows.iter().map(|rise| (rise.name.as_str(), rise)).collect()))
            .collect();
        JsonSample { interval_s, namespaces }
    }
}

fn text_sample(interval_s: f64, sample: u32, count: u32, rises: &SampleRises) -> String {
    let of = if count > 1 { format!(", sample {sample} of {count}") } else { String::new() };
    let mut out = format!("TCP counter deltas over {interval_s} s{of} ({NO_TRACING})\n");
    let name_width = rises.iter().flat_map(|(_, rows)| rows).map(|rise| rise.name.len()).max().unwrap_or(0);
    for (ns, rows) in rises {
        out.push_str(&format!("namespace {ns}\n"));
        if rows.is_empty() {
            out.push_str("  no TCP counter moved\n");
        }
        let mut group = None;
        for rise in rows {
            if group != Some(rise.group) {
                group = Some(rise.group);
                out.push_str(&format!("  {}\n", rise.group.title()));
            }
            out.push_str(&format!("    {:<name_width$} {:>9}  {}\n", rise.name, rise.delta, rise.meaning));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(pairs: &[(&str, u64)]) -> Counters {
        pairs.iter().map(|&(name, value)| (name.to_string(), value)).collect()
    }

    fn ns(name: &str, inode: u32) -> Netns {
        Netns { inode, name: name.into(), path: "/nonexistent".into() }
    }

    #[test]
    fn rises_are_grouped_then_largest_first() {
        let rises = explain_rises(counters(&[
            ("TcpInSegs", 40),
            ("TcpExtTCPACKSkippedPAWS", 2),
            ("TcpExtPAWSEstab", 3),
            ("TcpExtPAWSTimewait", 9),
            ("TcpExtListenOverflows", 1),
            ("TcpExtTCPSomethingNew", 5),
        ]));
        let order: Vec<(&str, Group)> = rises.iter().map(|r| (r.name.as_str(), r.group)).collect();
        assert_eq!(
            order,
            [
                ("TcpExtPAWSTimewait", Group::Paws),
                ("TcpExtPAWSEstab", Group::Paws),
                ("TcpExtTCPACKSkippedPAWS", Group::OutOfWindow),
                ("TcpExtListenOverflows", Group::SynListen),
                ("TcpInSegs", Group::Other),
                ("TcpExtTCPSomethingNew", Group::Other),
            ]
        );
        assert_eq!(rises[5].meaning, knowledge::UNDESCRIBED);
    }

    #[test]
    fn samples_subtract_per_namespace_and_keep_quiet_ones() {
        let previous = [(ns("root", 1), counters(&[("TcpInSegs", 10)])), (ns("b", 2), counters(&[("TcpInSegs", 5)]))];
        let current = [
            (ns("root", 1), counters(&[("TcpInSegs", 12), ("TcpExtPAWSEstab", 3)])),
            (ns("b", 2), counters(&[("TcpInSegs", 5)])),
        ];
        let rises = sample_rises(&previous, &current);
        assert_eq!(rises[0].0, "root");
        let root: Vec<(&str, u64)> = rises[0].1.iter().map(|r| (r.name.as_str(), r.delta)).collect();
        assert_eq!(root, [("TcpExtPAWSEstab", 3), ("TcpInSegs", 2)]);
        assert_eq!(rises[1], ("b".to_string(), Vec::new()));
    }

    #[test]
    fn json_has_the_documented_shape() {
        let rises =
            vec![("root".to_string(), explain_rises(counters(&[("TcpExtPAWSEstab", 3)]))), ("quiet".into(), vec![])];
        let json = serde_json::to_value(JsonSample::new(1.0, &rises)).unwrap();
        assert_eq!(json["interval_s"], 1.0);
        let paws = &json["namespaces"]["root"]["TcpExtPAWSEstab"];
        assert_eq!(paws["delta"], 3);
        assert_eq!(paws["group"], "paws");
        assert_eq!(paws["meaning"], knowledge::describe_counter("TcpExtPAWSEstab").1);
        assert_eq!(json["namespaces"]["quiet"], serde_json::json!({}));
    }

    #[test]
    fn text_says_it_is_not_tracing_and_shows_groups() {
        let rises = vec![
            ("root".to_string(), explain_rises(counters(&[("TcpExtPAWSEstab", 3), ("TcpInSegs", 12)]))),
            ("quiet".into(), vec![]),
        ];
        let text = text_sample(2.0, 1, 3, &rises);
        assert!(text.starts_with("TCP counter deltas over 2 s, sample 1 of 3 (counters only: no tracing)\n"), "{text}");
        assert!(text.contains("namespace root\n  PAWS / timestamps\n    TcpExtPAWSEstab         3  Segments dropped"));
        assert!(text.contains("  Other\n    TcpInSegs              12  Segments received"));
        assert!(text.contains("namespace quiet\n  no TCP counter moved\n"));
    }

    #[test]
    fn intervals_must_be_positive_seconds() {
        assert_eq!(parse_seconds("0.5"), Ok(0.5));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
    }
}
