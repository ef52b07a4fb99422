//! `netdiag top`: a live table of the peers the kernel is rejecting, worst first, read from the
//! kernel's per-peer maps at every refresh (exact counts, not samples).
use std::{
    collections::HashMap,
    io::IsTerminal,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Result;
use ratatui::{
    DefaultTerminal, Frame,
    crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Cell, Paragraph, Row, Table},
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use crate::{
    aggregate::Aggregator,
    error::usage,
    events::{self, ip_from},
    hooks::{self, HookStatus, Probes},
    netns,
    verdict::paws,
};

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, value_name = "S", default_value_t = 1.0, value_parser = parse_seconds)]
    pub interval: f64,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.1..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!("`{text}` is not a number of seconds between 0.1 and 3600")),
    }
}

/// How often key presses are looked at between refreshes.
const KEY_POLL: Duration = Duration::from_millis(50);

const HELP: &str = "s: sort by next column   q or Ctrl-C: quit   (Enter to drill into a peer: not available yet)";

/// Shows the table until `q`, Ctrl-C or SIGTERM; exit status 0, or 2 without a terminal.
pub async fn run(args: TopArgs) -> Result<i32> {
    if !std::io::stdout().is_terminal() {
        return Err(usage(
            "`netdiag top` draws a live table and needs a terminal on stdout; use `netdiag diagnose` (add --json for scripts)",
        ));
    }
    let mut probes = Probes::attach(&hooks::Options::default())?;
    // Top reads no samples, but an undrained ring fills up and then counts every sample as lost.
    let ring = probes.take_events()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let pump = tokio::spawn(events::pump(ring, Arc::new(Mutex::new(Aggregator::default())), stop_rx));

    let shown = show(&probes, Duration::from_secs_f64(args.interval)).await;
    let _ = stop_tx.send(true);
    pump.await??;
    drop(probes);
    shown.map(|()| 0)
}

/// The alternate screen in raw mode while it lives; dropping it gives the terminal back.
struct Screen {
    terminal: DefaultTerminal,
}

impl Screen {
    fn open() -> Result<Screen> {
        Ok(Screen { terminal: ratatui::try_init()? })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = ratatui::try_restore();
    }
}

async fn show(probes: &Probes, interval: Duration) -> Result<()> {
    // Raw mode turns Ctrl-C into a key, but a SIGINT or SIGTERM from elsewhere must also end
    // cleanly rather than leave the terminal raw and the programs attached.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut screen = Screen::open()?;
    let mut view = View::new(probes, interval.as_secs_f64());
    let mut refresh = tokio::time::interval(interval);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut keys = tokio::time::interval(KEY_POLL);
    loop {
        tokio::select! {
            _ = refresh.tick() => view.refresh(probes)?,
            _ = keys.tick() => {
                if view.handle_keys()? == Flow::Quit {
                    return Ok(());
                }
            }
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
        }
        screen.terminal.draw(|frame| view.draw(frame))?;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// One remote address as seen from one namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PeerId {
    addr: IpAddr,
    netns: u32,
}

/// Totals since `top` attached, per peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Totals {
    paws: u64,
    dupacks: u64,
    suppressed: u64,
    syns: u64,
}

#[derive(Clone, Debug, PartialEq)]
struct PeerRow {
    peer: PeerId,
    netns: String,
    totals: Totals,
    paws_per_s: f64,
}

/// The columns `s` cycles through, in that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortBy {
    PawsRate,
    PawsTotal,
    Dupacks,
    Suppressed,
    Syns,
    Peer,
}

impl SortBy {
    fn next(self) -> SortBy {
        match self {
            SortBy::PawsRate => SortBy::PawsTotal,
            SortBy::PawsTotal => SortBy::Dupacks,
            SortBy::Dupacks => SortBy::Suppressed,
            SortBy::Suppressed => SortBy::Syns,
            SortBy::Syns => SortBy::Peer,
            SortBy::Peer => SortBy::PawsRate,
        }
    }

    /// Worst first for the counts; by address for the peer.
    fn sort(self, rows: &mut [PeerRow]) {
        let key = |row: &PeerRow| -> u64 {
            match self {
                // Rates are shown to two decimals: compare them at that precision.
                SortBy::PawsRate => (row.paws_per_s * 100.0).round() as u64,
                SortBy::PawsTotal => row.totals.paws,
                SortBy::Dupacks => row.totals.dupacks,
                SortBy::Suppressed => row.totals.suppressed,
                SortBy::Syns => row.totals.syns,
                SortBy::Peer => 0,
            }
        };
        rows.sort_by(|a, b| key(b).cmp(&key(a)).then(a.peer.cmp(&b.peer)));
    }
}

/// A table column: its title, the sort it stands for, and the hook its numbers come from.
struct Column {
    title: &'static str,
    sort: Option<SortBy>,
    hook: Option<&'static str>,
    width: Constraint,
}

const COLUMNS: [Column; 7] = [
    Column { title: "peer", sort: Some(SortBy::Peer), hook: None, width: Constraint::Length(39) },
    Column { title: "netns", sort: None, hook: None, width: Constraint::Fill(1) },
    Column { title: "PAWS drops", sort: Some(SortBy::PawsTotal), hook: Some("paws_checks"), width: Constraint::Length(12) },
    Column { title: "PAWS/s", sort: Some(SortBy::PawsRate), hook: Some("paws_checks"), width: Constraint::Length(10) },
    Column { title: "dup-ACKs sent", sort: Some(SortBy::Dupacks), hook: Some("dupack_sent"), width: Constraint::Length(14) },
    Column { title: "suppressed", sort: Some(SortBy::Suppressed), hook: Some("oow_limiter"), width: Constraint::Length(12) },
    Column { title: "SYNs seen", sort: Some(SortBy::Syns), hook: Some("conn_request"), width: Constraint::Length(10) },
];

fn column_title(sort: SortBy) -> &'static str {
    COLUMNS.iter().find(|c| c.sort == Some(sort)).map_or("?", |c| c.title)
}

/// What is on screen and what the next refresh compares against.
struct View {
    kernel: String,
    hooks: Vec<HookStatus>,
    interval_s: f64,
    sort: SortBy,
    rows: Vec<PeerRow>,
    lost_events: u64,
    previous: HashMap<PeerId, u64>,
    previous_at: Instant,
}

impl View {
    fn new(probes: &Probes, interval_s: f64) -> View {
        View {
            kernel: kernel_release(),
            hooks: probes.hooks.clone(),
            interval_s,
            sort: SortBy::PawsRate,
            rows: Vec::new(),
            lost_events: 0,
            previous: HashMap::new(),
            previous_at: Instant::now(),
        }
    }

    fn refresh(&mut self, probes: &Probes) -> Result<()> {
        let totals = read_totals(probes)?;
        let now = Instant::now();
        let elapsed_s = now.duration_since(self.previous_at).as_secs_f64().max(1e-3);
        // Namespaces come and go while top runs: name them afresh each time.
        let known = netns::named().unwrap_or_default();
        self.rows = totals
            .iter()
            .map(|(peer, totals)| {
                let before = self.previous.get(peer).copied().unwrap_or(0);
                PeerRow {
                    peer: *peer,
                    netns: netns::display_name(peer.netns, &known),
                    totals: *totals,
                    paws_per_s: totals.paws.saturating_sub(before) as f64 / elapsed_s,
                }
            })
            .collect();
        self.sort.sort(&mut self.rows);
        self.previous = totals.iter().map(|(peer, t)| (*peer, t.paws)).collect();
        self.previous_at = now;
        self.lost_events = probes.stats()?.ring_lost;
        Ok(())
    }

    fn handle_keys(&mut self) -> Result<Flow> {
        while event::poll(Duration::ZERO)? {
            if let Event::Key(key) = event::read()?
                && self.on_key(key) == Flow::Quit
            {
                return Ok(Flow::Quit);
            }
        }
        Ok(Flow::Continue)
    }

    fn on_key(&mut self, key: KeyEvent) -> Flow {
        if key.kind != KeyEventKind::Press {
            return Flow::Continue;
        }
        match key.code {
            KeyCode::Char('q') => Flow::Quit,
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Flow::Quit,
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.sort.sort(&mut self.rows);
                Flow::Continue
            }
            _ => Flow::Continue,
        }
    }

    fn is_active(&self, hook: &str) -> bool {
        self.hooks.iter().any(|h| h.name == hook && h.active)
    }

    fn draw(&self, frame: &mut Frame) {
        let [header, table, help] =
            Layout::vertical([Constraint::Length(3), Constraint::Fill(1), Constraint::Length(1)]).areas(frame.area());
        frame.render_widget(Paragraph::new(self.header_lines()), header);
        frame.render_widget(self.table(), table);
        frame.render_widget(Paragraph::new(HELP), help);
    }

    fn header_lines(&self) -> Vec<Line<'static>> {
        let active: Vec<String> =
            self.hooks.iter().filter(|h| h.active).map(|h| format!("{} ({})", h.name, h.backend)).collect();
        let inactive: Vec<&str> = self.hooks.iter().filter(|h| !h.active).map(|h| h.name.as_str()).collect();
        let inactive = if inactive.is_empty() { String::new() } else { format!("; inactive: {}", inactive.join(", ")) };
        vec![
            Line::from(format!(
                "netdiag top - kernel {}, every {} s, {} peer(s), lost events: {}, sort: {}",
                self.kernel,
                self.interval_s,
                self.rows.len(),
                self.lost_events,
                column_title(self.sort)
            )),
            Line::from(format!("hooks: {}{inactive}", active.join(", "))),
        ]
    }

    fn table(&self) -> Table<'static> {
        let sorted = Style::default().add_modifier(Modifier::REVERSED);
        let header = COLUMNS.iter().map(|c| {
            let cell = Cell::from(c.title);
            if c.sort == Some(self.sort) { cell.style(sorted) } else { cell }
        });
        let rows = self.rows.iter().map(|row| Row::new(self.cells(row)));
        Table::new(rows, COLUMNS.iter().map(|c| c.width))
            .header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
    }

    fn cells(&self, row: &PeerRow) -> Vec<Cell<'static>> {
        let mut cells = vec![Cell::from(row.peer.addr.to_string()), Cell::from(row.netns.clone())];
        cells.extend(self.numbers(row).into_iter().map(|n| Cell::from(Line::from(n).right_aligned())));
        cells
    }

    /// The numeric columns of a row; "-" where the hook behind a column is not attached, so an
    /// unavailable count never reads as zero.
    fn numbers(&self, row: &PeerRow) -> Vec<String> {
        let numbers = [
            row.totals.paws.to_string(),
            format!("{:.2}", row.paws_per_s),
            row.totals.dupacks.to_string(),
            row.totals.suppressed.to_string(),
            row.totals.syns.to_string(),
        ];
        COLUMNS[2..]
            .iter()
            .zip(numbers)
            .map(|(column, number)| if column.hook.is_some_and(|hook| self.is_active(hook)) { number } else { "-".into() })
            .collect()
    }
}

/// Every peer in any of the kernel's per-peer maps, with its totals.
fn read_totals(probes: &Probes) -> Result<HashMap<PeerId, Totals>> {
    let mut totals: HashMap<PeerId, Totals> = HashMap::new();
    let mut add = |family: u8, addr: &[u8; 16], netns: u32, count: u64, field: fn(&mut Totals) -> &mut u64| {
        if let Some(addr) = ip_from(family, addr) {
            *field(totals.entry(PeerId { addr, netns }).or_default()) += count;
        }
    };
    for (key, stats) in probes.peer_drops()? {
        let reason = probes.reasons.name(key.reason as u32);
        if paws::Variant::of(&reason, key.sk_state).is_some() {
            add(key.family, &key.addr, key.netns, stats.count, |t| &mut t.paws);
        }
    }
    for (key, stats) in probes.dupack_counts()? {
        add(key.family, &key.addr, key.netns, stats.count, |t| &mut t.dupacks);
    }
    for (key, stats) in probes.oow_suppressed()? {
        add(key.family, &key.addr, key.netns, stats.count, |t| &mut t.suppressed);
    }
    for (key, stats) in probes.syn_counts()? {
        add(key.family, &key.addr, key.netns, stats.count, |t| &mut t.syns);
    }
    // Where conn_request is served by its tracepoint, the SYN funnel counts the SYNs.
    for (key, stats) in probes.funnel_counts()?.into_iter().filter(|(k, _)| k.stage == netdiag_common::funnel_stage::SYN_IN) {
        add(key.family, &key.addr, key.netns, stats.count, |t| &mut t.syns);
    }
    Ok(totals)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(addr: &str, paws: u64, dupacks: u64) -> PeerRow {
        PeerRow {
            peer: PeerId { addr: addr.parse().unwrap(), netns: 1 },
            netns: "root".into(),
            totals: Totals { paws, dupacks, ..Totals::default() },
            paws_per_s: paws as f64,
        }
    }

    fn hook(name: &str, active: bool) -> HookStatus {
        HookStatus { name: name.into(), backend: "test".into(), active, detail: String::new(), refused: Vec::new() }
    }

    #[test]
    fn shows_a_dash_for_counts_whose_hook_is_not_attached() {
        let view = View {
            kernel: String::new(),
            hooks: vec![hook("paws_checks", true), hook("dupack_sent", true), hook("oow_limiter", false)],
            interval_s: 1.0,
            sort: SortBy::PawsRate,
            rows: Vec::new(),
            lost_events: 0,
            previous: HashMap::new(),
            previous_at: Instant::now(),
        };
        assert_eq!(view.numbers(&row("10.0.0.1", 5, 2)), ["5", "5.00", "2", "-", "-"]);
    }

    #[test]
    fn sorts_worst_first_and_cycles_through_every_column() {
        let mut rows = vec![row("10.0.0.1", 1, 9), row("10.0.0.2", 5, 0)];
        SortBy::PawsTotal.sort(&mut rows);
        assert_eq!(rows[0].peer.addr.to_string(), "10.0.0.2");
        SortBy::Dupacks.sort(&mut rows);
        assert_eq!(rows[0].peer.addr.to_string(), "10.0.0.1");
        let mut sort = SortBy::PawsRate;
        for _ in 0..6 {
            assert!(COLUMNS.iter().any(|c| c.sort == Some(sort)));
            sort = sort.next();
        }
        assert_eq!(sort, SortBy::PawsRate);
    }
}
