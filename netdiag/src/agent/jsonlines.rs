//! One JSON line per finding change, for log shippers: the diagnose JSON's finding fields, plus
//! `event` (open, update, close), `time`, and what this episode of the finding added
//! (`episode_count`, `episode_rate_per_s`). `count` and `rate_per_s` are, as in diagnose, over
//! the whole run (since the agent started).
//!
//! The file is opened for appending (an existing file is never truncated, so a restart does not
//! lose what a shipper has not read yet), created with mode 0600, and refused if it is a symlink
//! (O_NOFOLLOW) or not a regular file, so the agent, running as root, cannot be pointed at
//! another file through a link.
use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    time::SystemTime,
};

use anyhow::Result;
use serde_json::{Value, json};

use super::findings::Event;
use crate::error::usage;

pub enum JsonLines {
    Stdout,
    File(File),
}

impl JsonLines {
    /// `-` is stdout; anything else a file path.
    pub fn open(target: &str) -> Result<JsonLines> {
        if target == "-" {
            return Ok(JsonLines::Stdout);
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(target)
            .map_err(|e| {
                let why = if e.raw_os_error() == Some(libc::ELOOP) { "it is a symlink".to_string() } else { e.to_string() };
                usage(format!("cannot open the JSON-lines file {target}: {why}"))
            })?;
        let kind = file.metadata()?.file_type();
        if !kind.is_file() {
            let what = if kind.is_fifo() { "a FIFO" } else { "not a regular file" };
            return Err(usage(format!("the JSON-lines file {target} is {what}; give a regular file or `-`")));
        }
        Ok(JsonLines::File(file))
    }

    /// Writes each event as one line, in one write each (appends of a line are never interleaved).
    pub fn write(&mut self, events: &[Event]) -> Result<()> {
        let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        for event in events {
            let mut line = serde_json::to_string(&line_of(event, &time))?;
            line.push('\n');
            match self {
                JsonLines::Stdout => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes())?;
                    out.flush()?;
                }
                JsonLines::File(file) => file.write_all(line.as_bytes())?,
            }
        }
        Ok(())
    }
}

fn line_of(event: &Event, time: &str) -> Value {
    let mut line = json!({
        "event": event.change.name(),
        "time": time,
        "episode_count": event.episode_count,
        "episode_rate_per_s": event.episode_rate_per_s,
    });
    if let (Value::Object(line), Ok(Value::Object(finding))) = (&mut line, serde_json::to_value(&event.finding)) {
        line.extend(finding);
    }
    line
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::{agent::findings::Change, verdict::Finding};

    fn event() -> Event {
        Event {
            change: Change::Open,
            finding: Finding {
                kind: "paws_rejections",
                variant: "time_wait",
                peer: "198.51.100.2".into(),
                netns: "srv".into(),
                local: vec!["198.51.100.1:8080".into()],
                count: 4,
                rate_per_s: 0.2,
                first_seen: "a".into(),
                last_seen: "b".into(),
                summary: "s".into(),
                advice: "a".into(),
                ..Default::default()
            },
            episode_count: 4,
            episode_rate_per_s: 2.0,
        }
    }

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("netdiag-jsonlines-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_line_has_the_finding_fields_and_the_event() {
        let line = line_of(&event(), "t");
        for field in ["kind", "variant", "peer", "netns", "local", "count", "rate_per_s", "first_seen", "last_seen", "summary", "advice"] {
            assert!(line.get(field).is_some(), "{field} missing from {line}");
        }
        assert_eq!(line["event"], "open");
        assert_eq!(line["episode_count"], 4);
    }

    #[test]
    fn creates_0600_appends_and_refuses_symlinks() {
        let dir = temp_dir("open");
        let path = dir.join("findings.jsonl");
        std::fs::write(&path, "kept\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        JsonLines::open(path.to_str().unwrap()).unwrap().write(&[event()]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("kept\n") && text.lines().count() == 2, "{text}");

        let fresh = dir.join("fresh.jsonl");
        JsonLines::open(fresh.to_str().unwrap()).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);

        let link = dir.join("link.jsonl");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let err = JsonLines::open(link.to_str().unwrap()).err().unwrap().to_string();
        assert!(err.contains("symlink"), "{err}");
        let err = JsonLines::open(dir.to_str().unwrap()).err().unwrap().to_string();
        assert!(err.contains("cannot open") || err.contains("not a regular file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
