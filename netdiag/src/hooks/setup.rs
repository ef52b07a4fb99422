//! The programs' load-time configuration, from the running kernel: the one [`Layout`] (struct
//! member offsets from BTF, perf tracepoint record offsets from their `format` files) and the
//! handlers' [`Settings`] (drop-reason numbers by name, filters, budgets), and for each
//! [`Need`] of a candidate whether this kernel meets it, or why not.
use std::collections::HashMap;

use anyhow::{Result, anyhow, ensure};
use netdiag_common::{FIELD_ABSENT, Layout, Settings, oow_why, paws};

use super::{
    Options,
    catalogue::{self, Need},
    drop_reasons::ReasonTable,
};
use crate::{btf::Btf, tracefs};

/// Drop reasons of an established connection's out-of-window checks (`tcp_validate_incoming`,
/// `tcp_ack`), each answered with a duplicate or challenge ACK unless `tcp_invalid_ratelimit`
/// suppresses it, with why.
pub const OOW_REASONS: &[(&str, u8)] = &[
    ("TCP_RFC7323_PAWS", oow_why::TIMESTAMP),
    ("TCP_OLD_SEQUENCE", oow_why::SEQUENCE),
    ("TCP_INVALID_SEQUENCE", oow_why::SEQUENCE),
    ("TCP_INVALID_END_SEQUENCE", oow_why::SEQUENCE),
    ("TCP_INVALID_ACK_SEQUENCE", oow_why::ACK),
    ("TCP_ACK_UNSENT_DATA", oow_why::ACK),
    ("TCP_TOO_OLD_ACK", oow_why::ACK),
];

/// The kernel's name of the reason `paws_time_wait` counts (and of its synthetic reason).
pub const TW_PAWS_REASON: &str = "TCP_RFC7323_TW_PAWS";

/// Marks, in a hook's detail, drop reasons the running kernel does not have.
pub const NOT_ON_THIS_KERNEL: &str = "not on this kernel";

/// SYN timestamp samples each CPU may send per second; more SYNs are still counted.
const SYN_SAMPLES_PER_S: u32 = 2000;

pub struct Setup {
    pub layout: Layout,
    pub settings: Settings,
    /// Per need: a note for the status of the hooks it serves, or why it is unmet.
    met: HashMap<Need, Result<String, String>>,
    /// The kernel's number for [`TW_PAWS_REASON`] (6.16 and later).
    pub tw_paws_reason: Option<u32>,
}

impl Setup {
    pub fn resolve(btf: &Btf, reasons: &ReasonTable, opts: &Options) -> Setup {
        let mut layout =
            Layout { skb_tail: FIELD_ABSENT, rec_drop_rx_sk: FIELD_ABSENT, sk_cgroup: FIELD_ABSENT, ..Layout::default() };
        let mut settings = Settings {
            only_netns: opts.only_netns.unwrap_or(0),
            captures_per_s: opts.captures_per_second,
            syn_samples_per_s: SYN_SAMPLES_PER_S,
            paws_wrap_s: paws_wrap_s(btf.has_member("inet_timewait_sock", &["tw_usec_ts"])),
            ..Settings::default()
        };
        let mut met = HashMap::new();
        met.insert(Need::Packet, packet_members(btf, &mut layout).map(|()| String::new()).map_err(short));
        met.insert(Need::TimeWait, time_wait_members(btf, &mut layout).map(|()| String::new()).map_err(short));
        met.insert(Need::WatchedReasons, watched_reasons(&mut settings, reasons, &opts.watched_reasons));
        met.insert(Need::OowReasons, oow_reasons(&mut settings, reasons));
        let tw_paws_reason = reasons.number(TW_PAWS_REASON);
        met.insert(Need::TimeWaitReason, match tw_paws_reason {
            Some(number) if settings.watched.has(number) => Ok(format!(", reason {TW_PAWS_REASON}={number}")),
            Some(_) => Err(format!("{TW_PAWS_REASON} is not among the watched drop reasons")),
            None => Err(format!("{TW_PAWS_REASON} {NOT_ON_THIS_KERNEL}")),
        });
        let drop_format = tracefs::read_format("skb", "kfree_skb");
        // rx_sk (6.11+): the tracepoint's fourth argument and record field alike.
        let has_rx_sk = drop_format.as_ref().ok().is_some_and(|f| f.field("rx_sk").is_some())
            || btf.has_member("trace_event_raw_kfree_skb", &["rx_sk"]);
        let has_reason = drop_format.as_ref().ok().map_or(btf.has_member("trace_event_raw_kfree_skb", &["reason"]), |f| f.field("reason").is_some());
        met.insert(Need::DropTracepoint, if has_reason {
            Ok(String::new())
        } else {
            Err("skb:kfree_skb carries no drop reason on this kernel (added in 5.17)".into())
        });
        if has_rx_sk {
            // A placeholder the perf program's record offset overwrites; the others only ask
            // whether it is there.
            layout.rec_drop_rx_sk = 0;
        }
        for (category, name) in catalogue::records() {
            let need = Need::Record(category, name);
            if met.contains_key(&need) {
                continue;
            }
            met.insert(need, record_fields(&mut layout, category, name, has_rx_sk).map(|()| String::new()).map_err(short));
        }
        Setup { layout, settings, met, tw_paws_reason }
    }

    /// Whether every need is met: the candidate's note (the needs' notes joined), or the first
    /// reason it cannot serve.
    pub fn check(&self, needs: &[Need]) -> Result<String, String> {
        let mut note = String::new();
        for need in needs {
            match self.met.get(need) {
                Some(Ok(part)) => note.push_str(part),
                Some(Err(why)) => return Err(why.clone()),
                None => return Err(format!("{need:?} was not resolved")),
            }
        }
        Ok(note)
    }
}

/// The members every handler reads, with the sizes the programs read them as.
fn packet_members(btf: &Btf, layout: &mut Layout) -> Result<()> {
    let member = |s: &str, path: &[&str]| btf.member_offset(s, path);
    for name in ["network_header", "transport_header"] {
        let size = btf.member_size("sk_buff", &[name])?;
        ensure!(size == 2, "sk_buff.{name} is {size} bytes on this kernel, expected 2");
    }
    layout.skb_head = member("sk_buff", &["head"])?;
    layout.skb_data = member("sk_buff", &["data"])?;
    layout.skb_network_header = member("sk_buff", &["network_header"])?;
    layout.skb_transport_header = member("sk_buff", &["transport_header"])?;
    layout.skb_tail = skb_tail_offset(btf);
    layout.skb_dev = member("sk_buff", &["dev"])?;
    layout.skb_sk = member("sk_buff", &["sk"])?;
    layout.skb_users = member("sk_buff", &["users"])?;
    layout.skb_refdst = member("sk_buff", &["_skb_refdst"])?;
    layout.dev_nd_net = member("net_device", &["nd_net", "net"])?;
    layout.dst_dev = member("dst_entry", &["dev"])?;
    layout.net_ns_inum = member("net", &["ns", "inum"])?;
    layout.sk_family = member("sock_common", &["skc_family"])?;
    layout.sk_state = member("sock_common", &["skc_state"])?;
    layout.sk_daddr = member("sock_common", &["skc_daddr"])?;
    layout.sk_v6_daddr = member("sock_common", &["skc_v6_daddr"])?;
    layout.sk_net = member("sock_common", &["skc_net", "net"])?;
    layout.sk_num = member("sock_common", &["skc_num"])?;
    let srtt_size = btf.member_size("tcp_sock", &["srtt_us"])?;
    ensure!(srtt_size == 4, "tcp_sock.srtt_us is {srtt_size} bytes on this kernel, expected 4");
    layout.tcp_srtt_us = member("tcp_sock", &["srtt_us"])?;
    layout.req_listener = member("sock_common", &["skc_listener"])?;
    socket_owner_members(btf, layout);
    Ok(())
}

/// The chain from a socket to its cgroup's id. Without it (kernels before 5.15 keep the
/// cgroup in a tagged word, or CONFIG_SOCK_CGROUP_DATA is off) sockets go unattributed and
/// findings name the workload behind their namespace only.
fn socket_owner_members(btf: &Btf, layout: &mut Layout) {
    let member = |s: &str, path: &[&str]| btf.member_offset(s, path);
    let id_size = btf.member_size("kernfs_node", &["id"]);
    if let (Ok(cgroup), Ok(kn), Ok(id), Ok(8)) =
        (member("sock", &["sk_cgrp_data", "cgroup"]), member("cgroup", &["kn"]), member("kernfs_node", &["id"]), id_size)
    {
        [layout.sk_cgroup, layout.cgroup_kn, layout.kernfs_id] = [cgroup, kn, id];
    }
}

/// `sk_buff.tail` is a 32-bit offset from `head` on 64-bit kernels (`NET_SKBUFF_DATA_USES_OFFSET`)
/// and a pointer elsewhere: the parser checks the headers against it only in the first case.
fn skb_tail_offset(btf: &Btf) -> u32 {
    match (btf.member_offset("sk_buff", &["tail"]), btf.member_size("sk_buff", &["tail"])) {
        (Ok(offset), Ok(4)) => offset,
        _ => FIELD_ABSENT,
    }
}

/// The TIME_WAIT socket offsets, with the sizes the program reads.
fn time_wait_members(btf: &Btf, layout: &mut Layout) -> Result<()> {
    let fields: [(&str, &[&str], u32); 4] = [
        ("inet_timewait_sock", &["tw_substate"], 1),
        ("tcp_timewait_sock", &["tw_ts_recent"], 4),
        ("tcp_timewait_sock", &["tw_ts_recent_stamp"], 4),
        ("net", &["ipv4", "sysctl_tcp_timestamps"], 1),
    ];
    let mut offsets = [0u32; 4];
    for (slot, (name, path, size)) in offsets.iter_mut().zip(fields) {
        let actual = btf.member_size(name, path)?;
        ensure!(actual == size, "{name}.{} is {actual} bytes on this kernel, expected {size}", path.join("."));
        *slot = btf.member_offset(name, path)?;
    }
    [layout.tw_substate, layout.tw_ts_recent, layout.tw_ts_recent_stamp, layout.net_tcp_timestamps] = offsets;
    Ok(())
}

/// How long `ts_recent` is trusted. `TCP_PAWS_WRAP` replaced `TCP_PAWS_24DAYS` in 6.7, in the
/// series that added microsecond timestamps, and with them `inet_timewait_sock.tw_usec_ts`.
fn paws_wrap_s(usec_timestamps: bool) -> u32 {
    if usec_timestamps { paws::WRAP_S } else { paws::WRAP_24DAYS_S }
}

/// The watched reasons by number, and a note naming them (`NAME=number`).
fn watched_reasons(settings: &mut Settings, reasons: &ReasonTable, names: &[String]) -> Result<String, String> {
    let mut watched = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        match reasons.number(name) {
            Some(number) => {
                settings.watched.insert(number);
                watched.push(format!("{name}={number}"));
            }
            None => missing.push(name.as_str()),
        }
    }
    if watched.is_empty() {
        return Err("none of the watched drop reasons exist on this kernel \
                    (PAWS drop reasons appeared in 6.13; fentry/kprobe backends see TIME_WAIT ones on older kernels)"
            .into());
    }
    if !missing.is_empty() {
        // Said where the user reads the hooks, so a quiet report is not taken for a clean bill.
        watched.push(format!(
            "{} {NOT_ON_THIS_KERNEL} (those drops are not attributed by this backend)",
            missing.join(", ")
        ));
    }
    Ok(format!(", filtered on {} (reason numbers from {})", watched.join(", "), reasons.source))
}

/// The out-of-window reason sets, and a note naming them; fails when the kernel has none.
fn oow_reasons(settings: &mut Settings, reasons: &ReasonTable) -> Result<String, String> {
    let mut found = Vec::new();
    for (name, why) in OOW_REASONS {
        if let Some(number) = reasons.number(name) {
            settings.set_oow(*why, number);
            found.push(format!("{name}={number}"));
        }
    }
    if found.is_empty() {
        return Err("none of the out-of-window drop reasons exist on this kernel".into());
    }
    Ok(format!(", out-of-window reasons {} (numbers from {})", found.join(", "), reasons.source))
}

/// The record offsets a perf tracepoint program reads, from the tracepoint's `format` file.
fn record_fields(layout: &mut Layout, category: &str, name: &str, has_rx_sk: bool) -> Result<()> {
    let format = tracefs::read_format(category, name)?;
    let field = |field: &str| -> Result<u32> {
        format.field(field).map(|f| f.offset).ok_or_else(|| anyhow!("{category}:{name} has no field {field} on this kernel"))
    };
    match (category, name) {
        ("skb", "kfree_skb") => {
            layout.rec_drop_skb = field("skbaddr")?;
            layout.rec_drop_reason = field("reason")?;
            if has_rx_sk {
                layout.rec_drop_rx_sk = field("rx_sk")?;
            }
        }
        ("net", "netif_receive_skb") => layout.rec_rx_skb = field("skbaddr")?,
        ("net", "net_dev_queue") => layout.rec_tx_skb = field("skbaddr")?,
        ("tcp", "tcp_retransmit_synack") => {
            [layout.rec_rs_sk, layout.rec_rs_sport, layout.rec_rs_family, layout.rec_rs_daddr, layout.rec_rs_daddr_v6] =
                [field("skaddr")?, field("sport")?, field("family")?, field("daddr")?, field("daddr_v6")?];
        }
        ("sock", "inet_sock_set_state") => {
            [layout.rec_ss_sk, layout.rec_ss_oldstate, layout.rec_ss_newstate, layout.rec_ss_sport] =
                [field("skaddr")?, field("oldstate")?, field("newstate")?, field("sport")?];
            [layout.rec_ss_family, layout.rec_ss_protocol, layout.rec_ss_daddr, layout.rec_ss_daddr_v6] =
                [field("family")?, field("protocol")?, field("daddr")?, field("daddr_v6")?];
        }
        _ => return Err(anyhow!("no record layout for {category}:{name}")),
    }
    Ok(())
}

/// The part of a setup error worth a line in a hook's status.
fn short(err: anyhow::Error) -> String {
    match err.downcast_ref::<crate::error::Unavailable>() {
        Some(missing) => missing.what.clone(),
        None => format!("{err:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_follows_microsecond_timestamps() {
        assert_eq!(paws_wrap_s(true), 2147);
        assert_eq!(paws_wrap_s(false), 24 * 24 * 3600);
    }

    #[test]
    fn reasons_are_sorted_into_why_by_name() {
        let table = ReasonTable::from_symbols(&[
            (36, "TCP_RFC7323_PAWS".into()),
            (41, "TCP_OLD_SEQUENCE".into()),
            (50, "TCP_TOO_OLD_ACK".into()),
            (99, "NOT_SPECIFIED".into()),
        ]);
        let mut settings = Settings::default();
        let note = oow_reasons(&mut settings, &table).unwrap();
        assert_eq!(settings.oow_why(36), oow_why::TIMESTAMP);
        assert_eq!(settings.oow_why(41), oow_why::SEQUENCE);
        assert_eq!(settings.oow_why(50), oow_why::ACK);
        assert_eq!(settings.oow_why(99), oow_why::NONE);
        assert!(note.contains("TCP_OLD_SEQUENCE=41"), "{note}");
        assert!(oow_reasons(&mut Settings::default(), &ReasonTable::from_symbols(&[])).is_err());
    }

    #[test]
    fn watched_reasons_missing_here_are_named_and_none_at_all_is_refused() {
        let table = ReasonTable::from_symbols(&[(36, "TCP_RFC7323_PAWS".into())]);
        let mut settings = Settings::default();
        let names = ["TCP_RFC7323_PAWS".to_string(), "TCP_RFC7323_TW_PAWS".to_string()];
        let note = watched_reasons(&mut settings, &table, &names).unwrap();
        assert!(settings.watched.has(36));
        assert!(note.contains("TCP_RFC7323_TW_PAWS not on this kernel"), "{note}");
        assert!(watched_reasons(&mut Settings::default(), &table, &names[1..]).is_err());
    }
}
