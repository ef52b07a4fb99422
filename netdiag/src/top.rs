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

use netdiag_common::{FlowKey, FlowStats, FunnelKey, PeerKey, PeerStats, funnel_stage};

use crate::output::counted;
use crate::{
    aggregate::{Aggregator, flows::FlowMonitor},
    counters::CounterWatch,
    error::usage,
    events::{self, ip_from},
    hooks::{self, HookStatus, Probes, ReasonTable},
    netns,
    session::{self, ReportFilter},
    verdict::{Finding, paws, syn_funnel::FunnelRow},
    workload::{Workload, Workloads},
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

const HELP: &str = "s: sort by next column   Up/Down: select   Enter: drill into the peer (Esc closes)   q or Ctrl-C: quit";

/// Shows the table until `q`, Ctrl-C or SIGTERM; exit status 0, or 2 without a terminal.
pub async fn run(args: TopArgs) -> Result<i32> {
    if !std::io::stdout().is_terminal() {
        return Err(usage(
            "`netdiag top` draws a live table and needs a terminal on stdout; use `netdiag diagnose` (add --json for scripts)",
        ));
    }
    let counters = CounterWatch::start()?;
    let mut probes = Probes::attach(&hooks::Options::default())?;
    let ring = probes.take_events()?;
    let aggregator = Arc::new(Mutex::new(Aggregator::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let pump = tokio::spawn(events::pump(ring, aggregator.clone(), stop_rx));
    let judging = Judging {
        aggregator,
        flows: FlowMonitor::silent(&probes.hooks),
        counters,
        started: Instant::now(),
    };

    let shown = show(&probes, judging, Duration::from_secs_f64(args.interval)).await;
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

/// What `diagnose` and the agent judge findings from, gathered since top attached, so the
/// drill-down shows the same findings they would.
struct Judging {
    /// The samples (SYNs and their timestamps, drops), filled from the ring.
    aggregator: Arc<Mutex<Aggregator>>,
    /// The ACK-loop detector, fed the per-flow counts at every refresh.
    flows: FlowMonitor,
    counters: CounterWatch,
    started: Instant,
}

impl Judging {
    /// The findings about one peer in one namespace and its SYN funnel, as `diagnose` would
    /// report them now.
    fn judge(&mut self, probes: &Probes, peer: PeerId, workloads: &Workloads) -> Result<Judged> {
        let filter = ReportFilter { peers: vec![peer.addr.into()], port: None, netns: vec![peer.netns] };
        let aggregator = self.aggregator.lock().unwrap_or_else(|e| e.into_inner());
        let table = workloads.table();
        let report = session::build_report(probes, &aggregator, &self.flows, &mut self.counters, &filter, &table, self.started)?;
        Ok(Judged { peer, findings: report.findings, syn_funnel: report.syn_funnel })
    }
}

/// The drill-down's findings and funnel, judged at the last refresh.
struct Judged {
    peer: PeerId,
    findings: Vec<Finding>,
    syn_funnel: Vec<FunnelRow>,
}

async fn show(probes: &Probes, mut judging: Judging, interval: Duration) -> Result<()> {
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
            _ = refresh.tick() => {
                judging.flows.poll(probes)?;
                view.refresh(probes)?;
                view.judge(probes, &mut judging)?;
            }
            _ = keys.tick() => {
                if view.handle_keys()? == Flow::Quit {
                    return Ok(());
                }
                // A peer just drilled into is judged at once, not at the next refresh.
                if view.detail != view.judged.as_ref().map(|j| j.peer) {
                    view.judge(probes, &mut judging)?;
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
    oow: u64,
    dupacks: u64,
    suppressed: u64,
    unanswered: u64,
    syns: u64,
}

#[derive(Clone, Debug, PartialEq)]
struct PeerRow {
    peer: PeerId,
    netns: String,
    /// The container or pod behind the namespace (`container/web`), as metrics label it.
    workload: String,
    totals: Totals,
    paws_per_s: f64,
}

/// The columns `s` cycles through, in that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortBy {
    PawsRate,
    PawsTotal,
    OutOfWindow,
    Dupacks,
    Suppressed,
    Unanswered,
    Syns,
    Peer,
}

impl SortBy {
    fn next(self) -> SortBy {
        match self {
            SortBy::PawsRate => SortBy::PawsTotal,
            SortBy::PawsTotal => SortBy::OutOfWindow,
            SortBy::OutOfWindow => SortBy::Dupacks,
            SortBy::Dupacks => SortBy::Suppressed,
            SortBy::Suppressed => SortBy::Unanswered,
            SortBy::Unanswered => SortBy::Syns,
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
                SortBy::OutOfWindow => row.totals.oow,
                SortBy::Dupacks => row.totals.dupacks,
                SortBy::Suppressed => row.totals.suppressed,
                SortBy::Unanswered => row.totals.unanswered,
                SortBy::Syns => row.totals.syns,
                SortBy::Peer => 0,
            }
        };
        rows.sort_by(|a, b| key(b).cmp(&key(a)).then(a.peer.cmp(&b.peer)));
    }
}

/// A table column: its title, the sort it stands for, and the hooks its numbers come from (any
/// of them active makes the number real).
struct Column {
    title: &'static str,
    sort: Option<SortBy>,
    hooks: &'static [&'static str],
    width: Width,
}

/// How wide a column is drawn.
#[derive(Clone, Copy)]
enum Width {
    Fixed(u16),
    /// As wide as its widest cell or title, at most `max`: an IPv4 peer and a short namespace
    /// name leave the workload the room an IPv6 address would take.
    Content { max: u16 },
    /// What the others leave.
    Rest,
}

/// The numbers sit between the two name columns at the left and the workload at the right.
const COLUMNS: [Column; 10] = [
    Column { title: "peer", sort: Some(SortBy::Peer), hooks: &[], width: Width::Content { max: 39 } },
    Column { title: "netns", sort: None, hooks: &[], width: Width::Content { max: 32 } },
    Column { title: "PAWS drops", sort: Some(SortBy::PawsTotal), hooks: &["paws_checks", "paws_time_wait"], width: Width::Fixed(11) },
    Column { title: "PAWS/s", sort: Some(SortBy::PawsRate), hooks: &["paws_checks", "paws_time_wait"], width: Width::Fixed(9) },
    Column { title: "out-of-window", sort: Some(SortBy::OutOfWindow), hooks: &["oow_received"], width: Width::Fixed(14) },
    Column { title: "dup-ACKs sent", sort: Some(SortBy::Dupacks), hooks: &["dupack_sent", "flow_dupacks"], width: Width::Fixed(14) },
    Column { title: "suppressed", sort: Some(SortBy::Suppressed), hooks: &["oow_limiter"], width: Width::Fixed(11) },
    Column { title: "unanswered SYNs", sort: Some(SortBy::Unanswered), hooks: &["synack_sent"], width: Width::Fixed(16) },
    Column { title: "SYNs seen", sort: Some(SortBy::Syns), hooks: &["conn_request"], width: Width::Fixed(10) },
    Column { title: "workload", sort: None, hooks: &[], width: Width::Rest },
];

fn column_title(sort: SortBy) -> &'static str {
    COLUMNS.iter().find(|c| c.sort == Some(sort)).map_or("?", |c| c.title)
}

/// What is on screen and what the next refresh compares against.
struct View {
    kernel: String,
    hooks: Vec<HookStatus>,
    reasons: ReasonTable,
    interval_s: f64,
    sort: SortBy,
    rows: Vec<PeerRow>,
    lost_events: u64,
    previous: HashMap<PeerId, u64>,
    previous_at: Instant,
    /// Index of the selected row.
    selected: usize,
    /// The peer Enter drilled into, shown below the table until Esc.
    detail: Option<PeerId>,
    /// The kernel's maps as last read, for the drill-down.
    maps: Maps,
    /// The findings and SYN funnel of the peer drilled into.
    judged: Option<Judged>,
    workloads: Workloads,
}

/// The kernel's per-peer and per-flow maps, read once per refresh.
#[derive(Default)]
struct Maps {
    drops: Vec<(PeerKey, PeerStats)>,
    flows: Vec<(FlowKey, FlowStats)>,
    funnel: Vec<(FunnelKey, PeerStats)>,
}

impl View {
    fn new(probes: &Probes, interval_s: f64) -> View {
        let shown = View::showing(kernel_release(), probes.hooks.clone(), probes.reasons.clone(), interval_s);
        View { workloads: Workloads::watch(), ..shown }
    }

    /// An empty view of these hooks, before the first refresh.
    fn showing(kernel: String, hooks: Vec<HookStatus>, reasons: ReasonTable, interval_s: f64) -> View {
        View {
            kernel,
            hooks,
            reasons,
            interval_s,
            sort: SortBy::PawsRate,
            rows: Vec::new(),
            lost_events: 0,
            previous: HashMap::new(),
            previous_at: Instant::now(),
            selected: 0,
            detail: None,
            maps: Maps::default(),
            judged: None,
            workloads: Workloads::default(),
        }
    }

    fn refresh(&mut self, probes: &Probes) -> Result<()> {
        self.maps = Maps { drops: probes.peer_drops()?, flows: probes.flow_counts()?, funnel: probes.funnel_counts()? };
        let totals = read_totals(probes, &self.maps)?;
        let now = Instant::now();
        let elapsed_s = now.duration_since(self.previous_at).as_secs_f64().max(1e-3);
        // Namespaces come and go while top runs: name them afresh each time.
        let known = netns::named().unwrap_or_default();
        let table = self.workloads.table();
        self.rows = totals
            .iter()
            .map(|(peer, totals)| {
                let before = self.previous.get(peer).copied().unwrap_or(0);
                PeerRow {
                    peer: *peer,
                    netns: netns::display_name(peer.netns, &known),
                    workload: table.of(peer.netns).map(Workload::label).unwrap_or_default(),
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

    fn judge(&mut self, probes: &Probes, judging: &mut Judging) -> Result<()> {
        self.judged = self.detail.map(|peer| judging.judge(probes, peer, &self.workloads)).transpose()?;
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
            KeyCode::Down => {
                self.selected = (self.selected + 1).min(self.rows.len().saturating_sub(1));
                Flow::Continue
            }
            KeyCode::Up => {
                self.selected = self.selected.saturating_sub(1);
                Flow::Continue
            }
            KeyCode::Enter => {
                let chosen = self.rows.get(self.selected).map(|row| row.peer);
                self.detail = if self.detail.is_some() && self.detail == chosen { None } else { chosen };
                Flow::Continue
            }
            KeyCode::Esc => {
                self.detail = None;
                Flow::Continue
            }
            _ => Flow::Continue,
        }
    }

    fn is_active(&self, hook: &str) -> bool {
        self.hooks.iter().any(|h| h.name == hook && h.active)
    }

    fn draw(&self, frame: &mut Frame) {
        let width = usize::from(frame.area().width);
        let detail = self.detail.map(|peer| self.detail_lines(peer, width)).unwrap_or_default();
        let [header, table, drill, help] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Fill(1),
            Constraint::Length(detail.len() as u16),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        frame.render_widget(Paragraph::new(self.header_lines()), header);
        frame.render_widget(self.table(), table);
        frame.render_widget(Paragraph::new(detail), drill);
        frame.render_widget(Paragraph::new(HELP), help);
    }

    /// The drill-down into one peer: its drops by reason and local port, its flows, exact counts
    /// from the kernel's maps; its SYN funnel per listening port, and each finding with the
    /// evidence it rests on, as `diagnose` would report them. Lines are cut at `width`.
    fn detail_lines(&self, peer: PeerId, width: usize) -> Vec<Line<'static>> {
        let known = netns::named().unwrap_or_default();
        let is_peer = |family: u8, addr: &[u8; 16], netns: u32| ip_from(family, addr) == Some(peer.addr) && netns == peer.netns;
        let mut lines = vec![Line::from(format!("peer {} in {} (Esc closes)", peer.addr, netns::display_name(peer.netns, &known)))
            .style(Style::default().add_modifier(Modifier::BOLD))];
        let mut drops: Vec<String> = self
            .maps
            .drops
            .iter()
            .filter(|(k, _)| is_peer(k.family, &k.addr, k.netns))
            .map(|(k, s)| format!("{} to :{} {}", self.reasons.name(k.reason.into()), k.local_port, s.count))
            .collect();
        drops.sort();
        lines.push(Line::from(format!("  drops: {}", if drops.is_empty() { "none".into() } else { drops.join(", ") })));
        for (k, s) in self.maps.flows.iter().filter(|(k, _)| is_peer(k.family, &k.remote, k.netns)).take(5) {
            let (Some(local), Some(remote)) = (ip_from(k.family, &k.local), ip_from(k.family, &k.remote)) else { continue };
            lines.push(Line::from(format!(
                "  flow {} <-> {}: out-of-window in {}, dup-ACKs out {}",
                std::net::SocketAddr::new(local, k.local_port),
                std::net::SocketAddr::new(remote, k.remote_port),
                s.oow_timestamp + s.oow_sequence + s.oow_ack,
                s.dupacks_out
            )));
        }
        let judged = self.judged.as_ref().filter(|j| j.peer == peer);
        for r in judged.into_iter().flat_map(|j| &j.syn_funnel) {
            let f = &r.funnel;
            lines.push(Line::from(format!(
                "  SYN funnel :{}: {} SYNs, {} SYN-ACKs ({} retransmitted), {} challenge ACKs, {} handshakes done",
                r.port, f.syns, f.synacks, f.synack_retransmits, f.challenge_acks, f.handshakes
            )));
        }
        for f in judged.into_iter().flat_map(|j| &j.findings) {
            lines.push(Line::from(format!(
                "  [{} / {}] {} {}, {:.2}/s: {}",
                f.kind,
                f.variant,
                f.count,
                counted(f.kind),
                f.rate_per_s,
                f.summary
            )));
            lines.extend(f.evidence.iter().flatten().map(|e| Line::from(format!("    - {e}"))));
        }
        lines.into_iter().map(|line| cut(line, width)).collect()
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
        let rows = self.rows.iter().enumerate().map(|(i, row)| {
            let cells = Row::new(self.cells(row));
            if i == self.selected { cells.style(Style::default().add_modifier(Modifier::BOLD)) } else { cells }
        });
        Table::new(rows, self.widths()).header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
    }

    fn widths(&self) -> Vec<Constraint> {
        let names: Vec<[String; 2]> = self.rows.iter().map(names).collect();
        COLUMNS
            .iter()
            .enumerate()
            .map(|(i, c)| match c.width {
                Width::Fixed(n) => Constraint::Length(n),
                Width::Content { max } => {
                    let widest = names.iter().map(|n| n[i].chars().count()).chain([c.title.len()]).max().unwrap_or(0);
                    Constraint::Length(u16::try_from(widest).unwrap_or(max).min(max))
                }
                Width::Rest => Constraint::Fill(1),
            })
            .collect()
    }

    fn cells(&self, row: &PeerRow) -> Vec<Cell<'static>> {
        let mut cells: Vec<Cell<'static>> = names(row).into_iter().map(Cell::from).collect();
        cells.extend(self.numbers(row).into_iter().map(|n| Cell::from(Line::from(n).right_aligned())));
        cells.push(Cell::from(row.workload.clone()));
        cells
    }

    /// The numeric columns of a row; "-" where the hook behind a column is not attached, so an
    /// unavailable count never reads as zero.
    fn numbers(&self, row: &PeerRow) -> Vec<String> {
        let numbers = [
            row.totals.paws.to_string(),
            format!("{:.2}", row.paws_per_s),
            row.totals.oow.to_string(),
            row.totals.dupacks.to_string(),
            row.totals.suppressed.to_string(),
            row.totals.unanswered.to_string(),
            row.totals.syns.to_string(),
        ];
        COLUMNS[2..]
            .iter()
            .zip(numbers)
            .map(|(column, number)| if column.hooks.iter().any(|hook| self.is_active(hook)) { number } else { "-".into() })
            .collect()
    }
}

/// Every peer in any of the kernel's per-peer and per-flow maps, with its totals.
fn read_totals(probes: &Probes, maps: &Maps) -> Result<HashMap<PeerId, Totals>> {
    let mut totals: HashMap<PeerId, Totals> = HashMap::new();
    let mut add = |family: u8, addr: &[u8; 16], netns: u32, count: u64, field: fn(&mut Totals) -> &mut u64| {
        if let Some(addr) = ip_from(family, addr) {
            *field(totals.entry(PeerId { addr, netns }).or_default()) += count;
        }
    };
    for (key, stats) in &maps.drops {
        let reason = probes.reasons.name(key.reason as u32);
        if paws::Variant::of(&reason, key.sk_state).is_some() {
            add(key.family, &key.addr, key.netns, stats.count, |t| &mut t.paws);
        }
    }
    // Duplicate ACKs per peer where a function hook counts them, else from the per-flow
    // egress counts: one source, never both.
    let dupacks_by_function = probes.hooks.iter().any(|h| h.name == "dupack_sent" && h.active);
    if dupacks_by_function {
        for (key, stats) in probes.dupack_counts()? {
            add(key.family, &key.addr, key.netns, stats.count, |t| &mut t.dupacks);
        }
    }
    for (key, stats) in &maps.flows {
        add(key.family, &key.remote, key.netns, stats.oow_timestamp + stats.oow_sequence + stats.oow_ack, |t| &mut t.oow);
        if !dupacks_by_function {
            add(key.family, &key.remote, key.netns, stats.dupacks_out, |t| &mut t.dupacks);
        }
    }
    for (key, stats) in probes.oow_suppressed()? {
        add(key.family, &key.addr, key.netns, stats.count, |t| &mut t.suppressed);
    }
    for (key, stats) in probes.syn_counts()? {
        add(key.family, &key.addr, key.netns, stats.count, |t| &mut t.syns);
    }
    // Where conn_request is served by its tracepoint, the SYN funnel counts the SYNs; SYNs
    // beyond the SYN-ACKs sent to the same peer and port went unanswered.
    let mut funnel: HashMap<(PeerId, u16), (u64, u64)> = HashMap::new();
    for (key, stats) in &maps.funnel {
        let Some(addr) = ip_from(key.family, &key.addr) else { continue };
        let entry = funnel.entry((PeerId { addr, netns: key.netns }, key.port)).or_default();
        match key.stage {
            funnel_stage::SYN_IN => entry.0 += stats.count,
            funnel_stage::SYNACK_OUT => entry.1 += stats.count,
            _ => {}
        }
    }
    for ((peer, _), (syns, synacks)) in funnel {
        let t = totals.entry(peer).or_default();
        t.syns += syns;
        t.unanswered += syns.saturating_sub(synacks);
    }
    Ok(totals)
}

/// The name columns of a row: the peer's address and its namespace.
fn names(row: &PeerRow) -> [String; 2] {
    [row.peer.addr.to_string(), row.netns.clone()]
}

/// `line` no wider than `width` columns, ending in `…` where it was cut.
fn cut(line: Line<'static>, width: usize) -> Line<'static> {
    if line.width() <= width {
        return line;
    }
    let text: String = line.to_string().chars().take(width.saturating_sub(1)).collect();
    Line::from(text + "…").style(line.style)
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
            workload: "host".into(),
            totals: Totals { paws, dupacks, ..Totals::default() },
            paws_per_s: paws as f64,
        }
    }

    fn hook(name: &str, active: bool) -> HookStatus {
        HookStatus {
            name: name.into(),
            backend: "test".into(),
            target: String::new(),
            active,
            detail: String::new(),
            refused: Vec::new(),
            per_packet: false,
            armed: active,
            programs: Vec::new(),
        }
    }

    #[test]
    fn shows_a_dash_for_counts_whose_hook_is_not_attached() {
        let hooks = vec![hook("paws_checks", true), hook("dupack_sent", true), hook("oow_limiter", false)];
        let view = View::showing(String::new(), hooks, ReasonTable::default(), 1.0);
        assert_eq!(view.numbers(&row("10.0.0.1", 5, 2)), ["5", "5.00", "-", "2", "-", "-", "-"]);
    }

    #[test]
    fn drill_down_shows_challenge_acks_and_each_findings_evidence_within_the_width() {
        let peer = PeerId { addr: "198.51.100.7".parse().unwrap(), netns: 1 };
        let mut row = FunnelRow::default();
        row.port = 443;
        row.funnel = crate::verdict::syn_funnel::Funnel { syns: 4, synacks: 1, challenge_acks: 2, ..Default::default() };
        let evidence = vec!["4 SYNs in, 1 SYN-ACKs out".to_string(), "x".repeat(200)];
        let finding = Finding { kind: "unanswered_syns", variant: "invalid_syn", evidence: Some(evidence), ..Finding::default() };
        let mut view = View::showing(String::new(), Vec::new(), ReasonTable::default(), 1.0);
        view.judged = Some(Judged { peer, findings: vec![finding], syn_funnel: vec![row] });
        let lines: Vec<String> = view.detail_lines(peer, 100).iter().map(Line::to_string).collect();
        assert!(lines.iter().any(|l| l.starts_with("  SYN funnel :443: 4 SYNs, 1 SYN-ACKs (0 retransmitted), 2 challenge ACKs")), "{lines:#?}");
        let shown = lines.iter().position(|l| l.starts_with("  [unanswered_syns / invalid_syn] 0 unanswered SYNs")).expect("the finding");
        assert_eq!(lines[shown + 1], "    - 4 SYNs in, 1 SYN-ACKs out");
        assert!(lines[shown + 2].starts_with("    - xxx") && lines[shown + 2].ends_with('…'), "{lines:#?}");
        assert!(lines.iter().all(|l| l.chars().count() <= 100), "{lines:#?}");
        // Another peer's judgement is not shown as this one's.
        view.judged.as_mut().unwrap().peer.netns = 2;
        assert!(!view.detail_lines(peer, 100).iter().any(|l| l.to_string().contains("challenge")));
    }

    #[test]
    fn sorts_worst_first_and_cycles_through_every_column() {
        let mut rows = vec![row("10.0.0.1", 1, 9), row("10.0.0.2", 5, 0)];
        SortBy::PawsTotal.sort(&mut rows);
        assert_eq!(rows[0].peer.addr.to_string(), "10.0.0.2");
        SortBy::Dupacks.sort(&mut rows);
        assert_eq!(rows[0].peer.addr.to_string(), "10.0.0.1");
        let mut sort = SortBy::PawsRate;
        for _ in 0..8 {
            assert!(COLUMNS.iter().any(|c| c.sort == Some(sort)));
            sort = sort.next();
        }
        assert_eq!(sort, SortBy::PawsRate);
    }
}
