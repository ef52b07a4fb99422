//! `netdiag explain NAME`: what a counter, drop reason or finding means, what usually causes
//! it, how netdiag ties it to a peer, and what to do.
use anyhow::Result;

use super::{
    knowledge::{self, ENTRIES, Entry, Kind},
    wrapped,
};
use crate::error::EXIT_USAGE;

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// A counter (`TcpExtPAWSEstab`, or just `PAWSEstab`), a drop reason (`TCP_RFC7323_PAWS`) or a
    /// finding (`ack_loop`), in any case.
    #[arg(value_name = "COUNTER|REASON|FINDING", required_unless_present = "list")]
    pub name: Option<String>,
    /// List every name netdiag can explain.
    #[arg(long, conflicts_with = "name")]
    pub list: bool,
}

/// Prints the explanation; exit status 0, or 2 with close suggestions for an unknown name.
pub async fn run(args: ExplainArgs) -> Result<i32> {
    let Some(name) = args.name else {
        print!("{}", listing());
        return Ok(0);
    };
    match knowledge::lookup(&name) {
        Some(entry) => {
            print!("{}", explanation(entry));
            Ok(0)
        }
        None => {
            eprintln!("{}", unknown(&name));
            Ok(EXIT_USAGE)
        }
    }
}

fn explanation(entry: &Entry) -> String {
    let mut out = format!("{} — {}, group: {}\n\n", entry.name, entry.kind.title(), entry.group.title());
    out.push_str("What it means\n");
    out.push_str(&wrapped(entry.meaning, 2));
    let Some(detail) = &entry.detail else {
        out.push_str("\nnetdiag only labels this counter (in `netdiag counters`); it does not tie it to peers.\n");
        return out;
    };
    let sections = [
        ("What usually causes it", Some(detail.causes)),
        ("How netdiag attributes it", Some(detail.attribution)),
        ("What it requires", detail.requires),
        ("What to do", Some(detail.action)),
    ];
    for (title, text) in sections.into_iter().filter_map(|(title, text)| Some((title, text?))) {
        out.push_str(&format!("\n{title}\n"));
        out.push_str(&wrapped(text, 2));
    }
    out.push_str(&format!("\nSee also: {}\n", detail.related.join(", ")));
    out
}

fn unknown(name: &str) -> String {
    let close = knowledge::suggestions(name);
    let hint =
        if close.is_empty() { "no close match".to_string() } else { format!("did you mean {}?", close.join(", ")) };
    format!(
        "netdiag: `{name}` is no counter, drop reason or finding netdiag knows; {hint} (`netdiag explain --list` shows them all)"
    )
}

fn listing() -> String {
    let mut out = String::new();
    for (kind, title) in [(Kind::Counter, "Counters"), (Kind::DropReason, "Drop reasons"), (Kind::Finding, "Findings")]
    {
        out.push_str(&format!("{title}\n"));
        for entry in ENTRIES.iter().filter(|entry| entry.kind == kind) {
            out.push_str(&format!("  {:<32} {}\n", entry.name, entry.meaning));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_every_section_of_a_detailed_entry() {
        let text = explanation(knowledge::lookup("PAWSTimewait").unwrap());
        assert!(text.starts_with("TcpExtPAWSTimewait — kernel counter (nstat), group: PAWS / timestamps\n"));
        for section in ["What it means", "What usually causes it", "How netdiag attributes it", "What to do"] {
            assert!(text.contains(&format!("\n{section}\n  ")), "{section} missing:\n{text}");
        }
        assert!(text.contains("TCP_RFC7323_TW_PAWS"), "{text}");
        assert!(text.trim_end().lines().last().unwrap().starts_with("See also: "));
    }

    #[test]
    fn a_finding_says_what_it_requires_before_what_to_do() {
        let text = explanation(knowledge::lookup("ack_loop").unwrap());
        let requires = text.find("\nWhat it requires\n  ").unwrap_or_else(|| panic!("no requirements:\n{text}"));
        assert!(requires > text.find("How netdiag attributes it").unwrap() && requires < text.find("What to do").unwrap());
        assert!(text.contains("unthrottled"), "seen from one end only it is a flood:\n{text}");
        let counter = explanation(knowledge::lookup("PAWSTimewait").unwrap());
        assert!(!counter.contains("What it requires"), "{counter}");
    }

    #[test]
    fn a_labelled_counter_says_it_is_not_attributed() {
        let text = explanation(knowledge::lookup("TcpInSegs").unwrap());
        assert!(text.contains("does not tie it to peers"), "{text}");
        assert!(!text.contains("What to do"));
    }

    #[test]
    fn unknown_names_get_suggestions() {
        let message = unknown("PAWSTimewiat");
        assert!(message.contains("did you mean TcpExtPAWSTimewait"), "{message}");
        assert!(unknown("zzzzzzzzzzzzzzzz").contains("no close match"));
    }

    #[test]
    fn listing_names_every_entry_under_its_kind() {
        let text = listing();
        assert_eq!(text.lines().count(), ENTRIES.len() + 3);
        let findings = text.split("Findings\n").nth(1).unwrap();
        assert!(findings.contains("ack_loop") && !findings.contains("TcpExt"));
    }
}
