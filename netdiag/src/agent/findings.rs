//! Findings over time: every cycle the agent rebuilds the report, whose finding counts are the
//! kernel's totals since the agent attached. This turns them into rises (what happened since
//! the last cycle) and into a life for each finding: it opens when its count first rises, is
//! updated when the count has doubled since the last line about it, and closes once it has not
//! risen for `close_after`.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::verdict::Finding;

/// One finding's identity: what, which variant, about whom, where.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FindingKey {
    pub kind: &'static str,
    pub variant: &'static str,
    pub peer: String,
    pub netns: String,
}

impl FindingKey {
    pub fn of(f: &Finding) -> FindingKey {
        FindingKey { kind: f.kind, variant: f.variant, peer: f.peer.clone(), netns: f.netns.clone() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Open,
    Update,
    Close,
}

impl Change {
    pub fn name(self) -> &'static str {
        match self {
            Change::Open => "open",
            Change::Update => "update",
            Change::Close => "close",
        }
    }
}

/// A change worth a log line, with the finding as it stands and what this episode added.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub change: Change,
    pub finding: Finding,
    /// Count since this finding opened.
    pub episode_count: u64,
    /// `episode_count` over the time since it opened.
    pub episode_rate_per_s: f64,
}

struct Tracked {
    /// The kernel's total at the last cycle.
    last_count: u64,
    last_rise: Instant,
    /// Set while open: when, the total just before, and the total at the last line.
    open: Option<Episode>,
    finding: Finding,
    /// Still in the latest report (the kernel map holds some of its entries).
    present: bool,
}

struct Episode {
    opened: Instant,
    count_before: u64,
    last_line_count: u64,
}

/// What one cycle changed.
#[derive(Debug, Default)]
pub struct Step {
    /// How much each finding rose since the last cycle (only those that rose).
    pub rises: Vec<(FindingKey, u64)>,
    pub events: Vec<Event>,
}

pub struct Tracker {
    tracked: HashMap<FindingKey, Tracked>,
    close_after: Duration,
    /// Most findings remembered that are no longer in the kernel map (those in it are bounded
    /// by its size); beyond it the longest quiet are closed early.
    max_absent: usize,
}

impl Tracker {
    pub fn new(close_after: Duration, max_absent: usize) -> Tracker {
        Tracker { tracked: HashMap::new(), close_after, max_absent }
    }

    /// Open findings per kind.
    pub fn open_by_kind(&self) -> HashMap<&'static str, usize> {
        let mut open = HashMap::new();
        for (key, t) in &self.tracked {
            if t.open.is_some() {
                *open.entry(key.kind).or_default() += 1;
            }
        }
        open
    }

    /// Findings remembered (open ones, and closed ones whose kernel entries still exist).
    pub fn remembered(&self) -> usize {
        self.tracked.len()
    }

    pub fn step(&mut self, findings: Vec<Finding>, now: Instant) -> Step {
        let mut step = Step::default();
        for t in self.tracked.values_mut() {
            t.present = false;
        }
        for finding in findings {
            let key = FindingKey::of(&finding);
            let t = self.tracked.entry(key.clone()).or_insert_with(|| Tracked {
                last_count: 0,
                last_rise: now,
                open: None,
                finding: finding.clone(),
                present: true,
            });
            // A total below the last one means the kernel evicted the entries and counts
            // afresh: all of the new total is new.
            let rise = finding.count.checked_sub(t.last_count).unwrap_or(finding.count);
            let before = finding.count - rise;
            t.last_count = finding.count;
            t.finding = finding;
            t.present = true;
            if rise == 0 {
                continue;
            }
            t.last_rise = now;
            step.rises.push((key, rise));
            let change = match &mut t.open {
                None => {
                    t.open = Some(Episode { opened: now, count_before: before, last_line_count: t.last_count });
                    Change::Open
                }
                Some(episode) if t.last_count >= episode.last_line_count.saturating_mul(2) => {
                    episode.last_line_count = t.last_count;
                    Change::Update
                }
                Some(_) => continue,
            };
            step.events.push(event(change, t, now));
        }
        for t in self.tracked.values_mut() {
            if t.open.is_some() && now.duration_since(t.last_rise) >= self.close_after {
                step.events.push(event(Change::Close, t, now));
                t.open = None;
            }
        }
        // Bounded: a closed finding no longer in the kernel map is forgotten, and under a flood
        // of peers the longest quiet of those absent from it are closed early.
        self.tracked.retain(|_, t| t.open.is_some() || t.present);
        let mut absent: Vec<(Instant, FindingKey)> =
            self.tracked.iter().filter(|(_, t)| !t.present).map(|(k, t)| (t.last_rise, k.clone())).collect();
        if absent.len() > self.max_absent {
            absent.sort();
            for (_, key) in &absent[..absent.len() - self.max_absent] {
                if let Some(t) = self.tracked.remove(key) {
                    step.events.push(event(Change::Close, &t, now));
                }
            }
        }
        step
    }
}

fn event(change: Change, t: &Tracked, now: Instant) -> Event {
    let episode = t.open.as_ref().expect("events are about open findings");
    let episode_count = t.last_count.saturating_sub(episode.count_before);
    // At least one second, so a finding that opens within a cycle does not show a huge rate.
    let seconds = now.duration_since(episode.opened).as_secs_f64().max(1.0);
    Event {
        change,
        finding: t.finding.clone(),
        episode_count,
        episode_rate_per_s: (episode_count as f64 / seconds * 1000.0).round() / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(peer: &str, count: u64) -> Finding {
        Finding {
            kind: "paws_rejections",
            variant: "established",
            peer: peer.into(),
            netns: "srv".into(),
            local: Vec::new(),
            count,
            rate_per_s: 0.0,
            first_seen: String::new(),
            last_seen: String::new(),
            summary: String::new(),
            advice: String::new(),
            ..Default::default()
        }
    }

    fn changes(step: &Step) -> Vec<(Change, &str, u64)> {
        step.events.iter().map(|e| (e.change, e.finding.peer.as_str(), e.episode_count)).collect()
    }

    #[test]
    fn opens_updates_on_doubling_and_closes_when_quiet() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut tracker = Tracker::new(Duration::from_secs(10), 100);
        let step = tracker.step(vec![finding("a", 3)], at(0));
        assert_eq!(changes(&step), [(Change::Open, "a", 3)]);
        assert_eq!(step.rises, [(FindingKey::of(&finding("a", 3)), 3)]);
        assert_eq!(tracker.open_by_kind()["paws_rejections"], 1);
        // Rising, but not doubled yet: no line; doubled: an update.
        assert!(tracker.step(vec![finding("a", 5)], at(1)).events.is_empty());
        assert_eq!(changes(&tracker.step(vec![finding("a", 6)], at(2))), [(Change::Update, "a", 6)]);
        // Quiet for less than close_after: still open; then closed once.
        assert!(tracker.step(vec![finding("a", 6)], at(11)).events.is_empty());
        assert_eq!(changes(&tracker.step(vec![finding("a", 6)], at(12))), [(Change::Close, "a", 6)]);
        assert!(tracker.step(vec![finding("a", 6)], at(13)).events.is_empty());
        assert!(tracker.open_by_kind().is_empty());
        // Rising again opens a new episode that counts from there.
        let step = tracker.step(vec![finding("a", 8)], at(14));
        assert_eq!(changes(&step), [(Change::Open, "a", 2)]);
    }

    #[test]
    fn a_total_that_drops_was_evicted_and_counts_afresh() {
        let now = Instant::now();
        let mut tracker = Tracker::new(Duration::from_secs(10), 100);
        tracker.step(vec![finding("a", 100)], now);
        let step = tracker.step(vec![finding("a", 4)], now);
        assert_eq!(step.rises[0].1, 4);
    }

    #[test]
    fn closed_findings_gone_from_the_kernel_map_are_forgotten() {
        let start = Instant::now();
        let mut tracker = Tracker::new(Duration::from_secs(1), 100);
        tracker.step((0..50).map(|i| finding(&format!("p{i}"), 1)).collect(), start);
        assert_eq!(tracker.remembered(), 50);
        let step = tracker.step(Vec::new(), start + Duration::from_secs(2));
        assert_eq!(step.events.len(), 50);
        assert!(step.events.iter().all(|e| e.change == Change::Close));
        assert_eq!(tracker.remembered(), 0);
    }

    #[test]
    fn open_findings_gone_from_the_kernel_map_are_capped() {
        let start = Instant::now();
        let mut tracker = Tracker::new(Duration::from_secs(600), 10);
        for i in 0..30u64 {
            tracker.step(vec![finding(&format!("p{i}"), 1)], start + Duration::from_secs(i));
        }
        assert_eq!(tracker.remembered(), 11, "the one still in the map, and the 10 most recent others");
        assert!(tracker.tracked.contains_key(&FindingKey::of(&finding("p29", 1))));
        assert!(!tracker.tracked.contains_key(&FindingKey::of(&finding("p0", 1))));
    }
}
