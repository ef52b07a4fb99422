//! `netdiag check`: the settings behind the incidents netdiag diagnoses, read inside each
//! namespace and rated, plus the listeners whose accept queue is full right now.
use std::{io::ErrorKind, path::Path};

use anyhow::Result;
use serde::{Serialize, Serializer};

use super::{
    in_namespace,
    listeners::{self, Listener},
    select_namespaces, wrapped,
};
use crate::error::EXIT_USAGE;

/// Exit status when something deserves a warning and nothing is critical.
pub const EXIT_WARNINGS: i32 = 1;
/// Exit status when a setting is critical.
pub const EXIT_CRITICAL: i32 = 3;

#[derive(clap::Args, Debug)]
#[command(after_help = "Exit status: 0 when everything is ok, 1 when something deserves a warning, \
                        3 when a setting is critical, 2 for an unknown namespace.")]
pub struct CheckArgs {
    /// Namespace to audit: `root`, an `ip netns` name, or `all` for root and every `ip netns` one.
    #[arg(long, value_name = "NAME|all", default_value = "root")]
    pub netns: String,
    /// One JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Audits the selected namespaces and prints the result; the exit status says how bad it is.
pub async fn run(args: CheckArgs) -> Result<i32> {
    let Some(namespaces) = select_namespaces(&args.netns)? else { return Ok(EXIT_USAGE) };
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned());
    let kernel = KernelVersion::parse(&release);
    let audited = tokio::task::spawn_blocking(move || {
        namespaces
            .into_iter()
            .map(|ns| {
                let (readings, listeners) = in_namespace(&ns, || Ok((read_settings(), listeners::list()?)))?;
                Ok((ns.name, audit(&readings, &listeners, kernel)))
            })
            .collect::<Result<Vec<_>>>()
    })
    .await??;
    let report = Report::new(release, audited);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(report.exit_code)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Critical,
}

impl Status {
    fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warn => EXIT_WARNINGS,
            Status::Critical => EXIT_CRITICAL,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Critical => "CRITICAL",
        }
    }
}

const TIMESTAMPS: &str = "net.ipv4.tcp_timestamps";
const TW_REUSE: &str = "net.ipv4.tcp_tw_reuse";
const INVALID_RATELIMIT: &str = "net.ipv4.tcp_invalid_ratelimit";
const RFC1337: &str = "net.ipv4.tcp_rfc1337";
const SYNCOOKIES: &str = "net.ipv4.tcp_syncookies";
const SOMAXCONN: &str = "net.core.somaxconn";
const MAX_SYN_BACKLOG: &str = "net.ipv4.tcp_max_syn_backlog";
const TW_RECYCLE: &str = "net.ipv4.tcp_tw_recycle";

/// The audited settings, in report order.
const SETTINGS: [&str; 8] =
    [TIMESTAMPS, TW_REUSE, INVALID_RATELIMIT, RFC1337, SYNCOOKIES, SOMAXCONN, MAX_SYN_BACKLOG, TW_RECYCLE];

/// Below this, listen() backlogs are small enough for ordinary bursts to overflow them.
const LOW_QUEUE_LIMIT: i64 = 1024;

/// What a `/proc/sys` file held.
#[derive(Clone, Debug, PartialEq)]
enum Reading {
    Value(i64),
    Absent,
    Unreadable(String),
}

type Readings = Vec<(&'static str, Reading)>;

/// The audited settings of the calling thread's namespace: `/proc/sys/net` shows the
/// namespace of the thread that reads it.
fn read_settings() -> Readings {
    SETTINGS.iter().map(|&key| (key, read_setting(key))).collect()
}

fn read_setting(key: &str) -> Reading {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse() {
            Ok(value) => Reading::Value(value),
            Err(_) => Reading::Unreadable(format!("unexpected content {:?}", text.trim())),
        },
        Err(err) if err.kind() == ErrorKind::NotFound => Reading::Absent,
        Err(err) => Reading::Unreadable(err.to_string()),
    }
}

/// Major and minor version of the running kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct KernelVersion {
    major: u32,
    minor: u32,
}

impl KernelVersion {
    /// From `/proc/sys/kernel/osrelease`, e.g. `6.18.44-generic`.
    fn parse(release: &str) -> Option<KernelVersion> {
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        Some(KernelVersion { major: parts.next()?.parse().ok()?, minor: parts.next()?.parse().ok()? })
    }
}

/// True only if the kernel is known and older than `major.minor`.
fn older_than(kernel: Option<KernelVersion>, major: u32, minor: u32) -> bool {
    kernel.is_some_and(|k| k < KernelVersion { major, minor })
}

#[derive(Debug, PartialEq, Serialize)]
struct SettingReport {
    name: &'static str,
    /// None when absent or unreadable.
    value: Option<i64>,
    status: Status,
    why: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    advice: Option<String>,
}

#[derive(Debug, PartialEq, Serialize)]
struct ListenerReport {
    local: String,
    accept_queue: u32,
    backlog: u32,
    status: Status,
    why: String,
    advice: String,
}

#[derive(Debug, Serialize)]
struct NamespaceReport {
    sysctls: Vec<SettingReport>,
    /// Only listeners whose accept queue is full or nearly so.
    listeners: Vec<ListenerReport>,
}

impl NamespaceReport {
    fn status(&self) -> Status {
        let settings = self.sysctls.iter().map(|s| s.status);
        settings.chain(self.listeners.iter().map(|l| l.status)).max().unwrap_or(Status::Ok)
    }
}

#[derive(Serialize)]
struct Report {
    kernel: String,
    status: Status,
    exit_code: i32,
    /// In the order they were selected (root first), as a JSON object keyed by name.
    #[serde(serialize_with = "as_object")]
    namespaces: Vec<(String, NamespaceReport)>,
}

fn as_object<S: Serializer>(pairs: &[(String, NamespaceReport)], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(pairs.iter().map(|(name, report)| (name, report)))
}

impl Report {
    fn new(kernel: String, namespaces: Vec<(String, NamespaceReport)>) -> Report {
        let status = namespaces.iter().map(|(_, ns)| ns.status()).max().unwrap_or(Status::Ok);
        Report { kernel, status, exit_code: status.exit_code(), namespaces }
    }

    fn to_text(&self) -> String {
        let mut out = format!("netdiag check: kernel {}\n", self.kernel);
        for (name, ns) in &self.namespaces {
            out.push_str(&format!("\nnamespace {name}\n"));
            for setting in &ns.sysctls {
                // Absent or unreadable: the explanation below says which.
                let value = setting.value.map_or_else(|| "-".to_string(), |v| v.to_string());
                out.push_str(&format!("  {:<9} {} = {value}\n", setting.status.label(), setting.name));
                out.push_str(&wrapped(&setting.why, 12));
                if let Some(advice) = &setting.advice {
                    out.push_str(&wrapped(&format!("→ {advice}"), 12));
                }
            }
            if ns.listeners.is_empty() {
                out.push_str("  ok        listeners: no accept queue is full or nearly full\n");
            }
            for listener in &ns.listeners {
                out.push_str(&format!("  {:<9} listener {}\n", listener.status.label(), listener.local));
                out.push_str(&wrapped(&listener.why, 12));
                out.push_str(&wrapped(&format!("→ {}", listener.advice), 12));
            }
        }
        out.push_str(&format!("\noverall: {} (exit status {})\n", self.status.label(), self.exit_code));
        out
    }
}

/// Rates what was read in one namespace.
fn audit(readings: &Readings, listeners: &[Listener], kernel: Option<KernelVersion>) -> NamespaceReport {
    let context = Context { readings, kernel };
    let sysctls = readings
        .iter()
        .map(|(name, reading)| {
            let rating = context.rate(name, reading);
            let value = match reading {
                Reading::Value(v) => Some(*v),
                Reading::Absent | Reading::Unreadable(_) => None,
            };
            SettingReport { name, value, status: rating.status, why: rating.why, advice: rating.advice }
        })
        .collect();
    NamespaceReport { sysctls, listeners: listeners.iter().filter_map(rate_listener).collect() }
}

struct Rating {
    status: Status,
    why: String,
    advice: Option<String>,
}

fn ok(why: impl Into<String>) -> Rating {
    Rating { status: Status::Ok, why: why.into(), advice: None }
}

fn warn(why: impl Into<String>, advice: impl Into<String>) -> Rating {
    Rating { status: Status::Warn, why: why.into(), advice: Some(advice.into()) }
}

fn critical(why: impl Into<String>, advice: impl Into<String>) -> Rating {
    Rating { status: Status::Critical, why: why.into(), advice: Some(advice.into()) }
}

/// Everything a rating may depend on: the other settings of the namespace and the kernel.
struct Context<'a> {
    readings: &'a Readings,
    kernel: Option<KernelVersion>,
}

impl Context<'_> {
    fn value(&self, key: &str) -> Option<i64> {
        self.readings.iter().find_map(|(name, reading)| match reading {
            Reading::Value(v) if *name == key => Some(*v),
            _ => None,
        })
    }

    fn rate(&self, key: &str, reading: &Reading) -> Rating {
        let value = match reading {
            Reading::Value(value) => *value,
            Reading::Absent => return self.absent(key),
            Reading::Unreadable(err) => {
                return warn(format!("Could not read it: {err}."), format!("Read it with `sysctl {key}` as root."));
            }
        };
        match key {
            TIMESTAMPS => self.timestamps(value),
            TW_REUSE => tw_reuse(value),
            INVALID_RATELIMIT => invalid_ratelimit(value),
            RFC1337 => rfc1337(value),
            SYNCOOKIES => syncookies(value),
            SOMAXCONN => somaxconn(value),
            MAX_SYN_BACKLOG => self.max_syn_backlog(value),
            TW_RECYCLE => tw_recycle(value),
            _ => unreachable!("{key} is not an audited setting"),
        }
    }

    fn absent(&self, key: &str) -> Rating {
        match key {
            TW_RECYCLE => ok("Not present: removed in Linux 4.12, so it cannot refuse clients behind a NAT here."),
            INVALID_RATELIMIT if older_than(self.kernel, 4, 0) => critical(
                "This kernel predates the limit on duplicate ACKs for invalid segments (Linux 4.0): two hosts that \
                 reject each other's segments trade ACKs at line rate.",
                "Upgrade the kernel. Until then net.ipv4.tcp_timestamps=0 removes the timestamp kind of ACK loop, \
                 at the cost of PAWS protection.",
            ),
            _ => warn(
                "Not present in this namespace: an older kernel, or one that keeps this setting global.",
                format!("Read it in the root namespace with `sysctl {key}`."),
            ),
        }
    }

    fn timestamps(&self, value: i64) -> Rating {
        match value {
            0 => warn(
                "TCP timestamps are off: PAWS cannot catch old duplicate segments on fast connections and RTT is \
                 measured less precisely. Often a stopgap left behind after timestamp rejections.",
                "Set net.ipv4.tcp_timestamps=1 once the cause of the rejections is found (`netdiag diagnose`).",
            ),
            1 if older_than(self.kernel, 4, 10) => without_offsets("kernels before 4.10 send none"),
            1 => ok("Timestamps on, with a random offset per address pair: peers cannot read this host's uptime."),
            2 => without_offsets("tcp_timestamps=2"),
            other => unknown_value(TIMESTAMPS, other),
        }
    }

    fn max_syn_backlog(&self, value: i64) -> Rating {
        let threshold = value * 3 / 4;
        match self.value(SYNCOOKIES) {
            Some(0) if value < LOW_QUEUE_LIMIT => warn(
                format!(
                    "With SYN cookies off, a listener drops SYNs from new clients once it holds {threshold} \
                     half-open requests (three quarters of {value}): a burst or a small SYN flood locks clients out."
                ),
                format!("Set net.ipv4.tcp_syncookies=1, or raise {MAX_SYN_BACKLOG}."),
            ),
            Some(0) => ok(format!(
                "With SYN cookies off, a listener drops SYNs from new clients beyond {threshold} half-open requests."
            )),
            _ => ok(format!(
                "{value} half-open requests per listener; beyond its own backlog a listener answers with SYN cookies."
            )),
        }
    }
}

/// Timestamps sent as this host's raw clock, for `reason`.
fn without_offsets(reason: &str) -> Rating {
    warn(
        format!(
            "Timestamps on without a random offset ({reason}): every peer reads this host's uptime from TSval, and \
             hosts sharing a NAT address can be told apart and counted by their clocks. (Offsets do not prevent \
             PAWS rejections between hosts behind one NAT; see `netdiag explain nat_timestamp_clocks`.)"
        ),
        format!("Set {TIMESTAMPS}=1 unless something here needs the raw clock."),
    )
}

fn tw_reuse(value: i64) -> Rating {
    match value {
        0 => ok("TIME_WAIT 4-tuples are never reused early for outgoing connections."),
        1 => ok("Outgoing connections may reuse a TIME_WAIT 4-tuple once timestamps prove the new one is newer; \
                 incoming ones are never affected, unlike with the removed tcp_tw_recycle."),
        2 => ok("TIME_WAIT 4-tuples are reused early only for outgoing connections over loopback (the default)."),
        other => unknown_value(TW_REUSE, other),
    }
}

fn invalid_ratelimit(value: i64) -> Rating {
    match value {
        0 => critical(
            "Duplicate ACKs answering invalid segments are not rate-limited: two hosts that reject each other's \
             segments (rewritten timestamps or sequence numbers) trade ACKs at line rate.",
            format!("Set {INVALID_RATELIMIT}=500 (the default)."),
        ),
        ms if ms > 0 => ok(format!(
            "At most one duplicate ACK per {ms} ms per connection answers invalid segments, so an ACK loop stays slow."
        )),
        other => unknown_value(INVALID_RATELIMIT, other),
    }
}

fn rfc1337(value: i64) -> Rating {
    match value {
        0 => ok("An RST may end a TIME_WAIT early (the default): a client whose reconnect meets TIME_WAIT gets \
                 through on its next try."),
        1 => ok("TIME_WAIT ignores RSTs and lasts its full 60 s (RFC 1337): a client behind a NAT that reconnects \
                 with an older timestamp is refused until it ends (TcpExtPAWSTimewait)."),
        other => unknown_value(RFC1337, other),
    }
}

fn syncookies(value: i64) -> Rating {
    match value {
        0 => warn(
            "No SYN cookies: once a listener's SYN queue is full, further SYNs are dropped \
             (TcpExtTCPReqQFullDrop), so a SYN flood or a burst locks real clients out.",
            format!("Set {SYNCOOKIES}=1 (the default)."),
        ),
        1 => ok("SYN cookies answer SYNs once a listener's SYN queue is full (the default)."),
        2 => warn(
            "SYN cookies for every SYN, even with room in the queue: meant for testing; without timestamps such \
             connections lose window scaling and SACK.",
            format!("Set {SYNCOOKIES}=1."),
        ),
        other => unknown_value(SYNCOOKIES, other),
    }
}

fn somaxconn(value: i64) -> Rating {
    if value < LOW_QUEUE_LIMIT {
        return warn(
            format!(
                "listen() backlogs are silently capped at {value}: bursts of connections overflow accept queues \
                 (TcpExtListenOverflows)."
            ),
            format!("Set {SOMAXCONN}=4096 (the default since Linux 5.4) or more."),
        );
    }
    ok(format!("listen() backlogs may be up to {value}."))
}

fn tw_recycle(value: i64) -> Rating {
    match value {
        0 => ok("Off: SYNs are not refused by per-address timestamp memory."),
        1 => critical(
            "On: SYNs from an address are refused when their timestamp is behind the last one seen from that \
             address, so clients behind one NAT fail to connect at random.",
            format!("Set {TW_RECYCLE}=0; Linux 4.12 removed the setting for this reason."),
        ),
        other => unknown_value(TW_RECYCLE, other),
    }
}

fn unknown_value(key: &str, value: i64) -> Rating {
    warn(
        format!("{value} is not a value netdiag knows for this setting."),
        format!("Check `sysctl {key}` against the kernel's ip-sysctl documentation."),
    )
}

/// A warning for a listener whose accept queue is full or at least nine tenths full.
fn rate_listener(listener: &Listener) -> Option<ListenerReport> {
    let (queued, backlog) = (listener.queued, listener.backlog);
    // The kernel refuses new connections once more than `backlog` are waiting.
    let why = if queued > backlog {
        format!(
            "Accept queue full: {queued} connections wait for accept() with a backlog of {backlog}; new handshakes \
             are refused (TcpExtListenOverflows)."
        )
    } else if queued > 0 && u64::from(queued) * 10 >= u64::from(backlog) * 9 {
        format!("Accept queue nearly full: {queued} connections wait for accept() with a backlog of {backlog}.")
    } else {
        return None;
    };
    Some(ListenerReport {
        local: listener.local.to_string(),
        accept_queue: queued,
        backlog,
        status: Status::Warn,
        why,
        advice: format!(
            "The application accepts too slowly: find it with `ss -ltnp 'sport = :{}'`, then make it accept faster \
             or raise its listen() backlog (capped by {SOMAXCONN}).",
            listener.local.port()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{netns, scenario::Lab};

    const MODERN: Option<KernelVersion> = Some(KernelVersion { major: 6, minor: 18 });

    /// A fresh namespace on Linux 6.18.
    fn defaults() -> Readings {
        let values = [1, 2, 500, 0, 1, 4096, 2048];
        let mut readings: Readings = SETTINGS.iter().zip(values).map(|(&key, v)| (key, Reading::Value(v))).collect();
        readings.push((TW_RECYCLE, Reading::Absent));
        readings
    }

    fn with(mut readings: Readings, key: &str, reading: Reading) -> Readings {
        readings.iter_mut().find(|(name, _)| *name == key).unwrap().1 = reading;
        readings
    }

    fn status_of(readings: &Readings, key: &str, kernel: Option<KernelVersion>) -> Status {
        audit(readings, &[], kernel).sysctls.into_iter().find(|s| s.name == key).unwrap().status
    }

    #[test]
    fn defaults_are_all_ok() {
        let report = audit(&defaults(), &[], MODERN);
        assert_eq!(report.status(), Status::Ok);
        assert_eq!(report.sysctls.len(), SETTINGS.len());
        assert!(report.sysctls.iter().all(|s| s.advice.is_none()));
        let recycle = report.sysctls.iter().find(|s| s.name == TW_RECYCLE).unwrap();
        assert_eq!((recycle.value, recycle.status), (None, Status::Ok));
    }

    #[test]
    fn rates_each_setting() {
        let cases = [
            (TIMESTAMPS, 0, Status::Warn),
            (TIMESTAMPS, 2, Status::Warn),
            (TIMESTAMPS, 7, Status::Warn),
            (TW_REUSE, 1, Status::Ok),
            (INVALID_RATELIMIT, 0, Status::Critical),
            (INVALID_RATELIMIT, 8, Status::Ok),
            (RFC1337, 1, Status::Ok),
            (SYNCOOKIES, 0, Status::Warn),
            (SYNCOOKIES, 2, Status::Warn),
            (SOMAXCONN, 128, Status::Warn),
            (SOMAXCONN, 1024, Status::Ok),
            (MAX_SYN_BACKLOG, 128, Status::Ok),
            (TW_RECYCLE, 1, Status::Critical),
            (TW_RECYCLE, 0, Status::Ok),
        ];
        for (key, value, expected) in cases {
            let readings = with(defaults(), key, Reading::Value(value));
            assert_eq!(status_of(&readings, key, MODERN), expected, "{key}={value}");
        }
    }

    #[test]
    fn ratings_depend_on_the_kernel_and_other_settings() {
        let old = Some(KernelVersion { major: 4, minor: 9 });
        assert_eq!(status_of(&defaults(), TIMESTAMPS, old), Status::Warn, "no per-pair offsets before 4.10");
        assert_eq!(status_of(&defaults(), TIMESTAMPS, None), Status::Ok, "unknown kernels count as current");
        let no_limiter = with(defaults(), INVALID_RATELIMIT, Reading::Absent);
        assert_eq!(
            status_of(&no_limiter, INVALID_RATELIMIT, Some(KernelVersion { major: 3, minor: 13 })),
            Status::Critical
        );
        assert_eq!(status_of(&no_limiter, INVALID_RATELIMIT, MODERN), Status::Warn);
        let small_backlog = with(defaults(), MAX_SYN_BACKLOG, Reading::Value(128));
        assert_eq!(status_of(&small_backlog, MAX_SYN_BACKLOG, MODERN), Status::Ok, "cookies cover it");
        let no_cookies = with(small_backlog, SYNCOOKIES, Reading::Value(0));
        assert_eq!(status_of(&no_cookies, MAX_SYN_BACKLOG, MODERN), Status::Warn);
        let unreadable = with(defaults(), RFC1337, Reading::Unreadable("Permission denied".into()));
        assert_eq!(status_of(&unreadable, RFC1337, MODERN), Status::Warn);
    }

    #[test]
    fn the_worst_rating_sets_the_exit_status() {
        let report =
            |readings: Readings| Report::new("6.18.0".into(), vec![("root".into(), audit(&readings, &[], MODERN))]);
        assert_eq!(report(defaults()).exit_code, 0);
        assert_eq!(report(with(defaults(), SYNCOOKIES, Reading::Value(0))).exit_code, EXIT_WARNINGS);
        let both = with(with(defaults(), SYNCOOKIES, Reading::Value(0)), INVALID_RATELIMIT, Reading::Value(0));
        let worst = report(both);
        assert_eq!((worst.status, worst.exit_code), (Status::Critical, EXIT_CRITICAL));
        let text = worst.to_text();
        assert!(text.contains("  CRITICAL  net.ipv4.tcp_invalid_ratelimit = 0\n"), "{text}");
        assert!(text.ends_with("overall: CRITICAL (exit status 3)\n"), "{text}");
        let json = serde_json::to_value(&worst).unwrap();
        assert_eq!(json["namespaces"]["root"]["sysctls"][2]["status"], "critical");
        assert_eq!(json["namespaces"]["root"]["sysctls"][2]["value"], 0);
    }

    #[test]
    fn warns_about_full_and_nearly_full_accept_queues() {
        let listener = |queued, backlog| Listener { local: "192.0.2.1:80".parse().unwrap(), queued, backlog };
        assert!(rate_listener(&listener(2, 1)).unwrap().why.starts_with("Accept queue full"));
        assert!(rate_listener(&listener(1, 0)).unwrap().why.starts_with("Accept queue full"));
        assert!(rate_listener(&listener(9, 10)).unwrap().why.starts_with("Accept queue nearly full"));
        assert!(rate_listener(&listener(8, 10)).is_none());
        assert!(rate_listener(&listener(0, 0)).is_none());
        let report = audit(&defaults(), &[listener(0, 4096), listener(5, 4)], MODERN);
        assert_eq!(report.listeners.len(), 1);
        assert_eq!(report.status(), Status::Warn);
    }

    #[test]
    fn parses_kernel_releases() {
        assert_eq!(KernelVersion::parse("6.18.44-fc-v657"), MODERN);
        assert_eq!(KernelVersion::parse("4.9"), Some(KernelVersion { major: 4, minor: 9 }));
        assert_eq!(KernelVersion::parse("weird"), None);
        assert!(older_than(Some(KernelVersion { major: 4, minor: 11 }), 4, 12));
        assert!(!older_than(None, 4, 12));
    }

    /// The experiment behind reading `/proc/sys/net` from a thread that joined a namespace: it
    /// shows that namespace's values, not the process's.
    #[test]
    fn proc_sys_net_follows_the_reading_thread() {
        let mut lab = Lab::new("opsysctl").unwrap();
        let Ok(name) = lab.add_ns("audit") else { return eprintln!("skipping: cannot create namespaces here") };
        lab.sysctl(&name, INVALID_RATELIMIT, "0").unwrap();
        netns::run_in(&lab.ns_path(&name), || Ok(std::fs::write("/proc/sys/net/core/somaxconn", "77")?)).unwrap();
        let ns = netns::named().unwrap().into_iter().find(|ns| ns.name == name).unwrap();
        let inside = in_namespace(&ns, || Ok(read_settings())).unwrap();
        let value = |readings: &Readings, key| readings.iter().find(|(k, _)| *k == key).unwrap().1.clone();
        assert_eq!(value(&inside, INVALID_RATELIMIT), Reading::Value(0));
        assert_eq!(value(&inside, SOMAXCONN), Reading::Value(77));
        let here = read_settings();
        assert_ne!(value(&here, INVALID_RATELIMIT), Reading::Value(0));
        assert_ne!(value(&here, SOMAXCONN), Reading::Value(77));
    }
}
