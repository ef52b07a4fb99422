//! Drop-reason numbers differ between kernels: resolve them by name on the running one, from
//! BTF's `enum skb_drop_reason`, else from the tracepoint's `__print_symbolic` table.
use std::collections::BTreeMap;

use anyhow::Result;
use netdiag_common::synthetic_reason;

use crate::{btf::Btf, error::usage, operator::knowledge::edit_distance, tracefs::{self, TracepointFormat}};

const BTF_PREFIX: &str = "SKB_DROP_REASON_";

/// Drop reasons of the PAWS checks (RFC 7323), by kernel name without the prefix.
pub const PAWS_REASONS: &[&str] =
    &["TCP_RFC7323_PAWS", "TCP_RFC7323_PAWS_ACK", "TCP_RFC7323_TW_PAWS", "TCP_RFC7323_TSECR"];

/// Drop reasons of a handshake (SYN or its final ACK) that are not PAWS checks, for the SYN
/// funnel: every way the kernel ends a SYN without a SYN-ACK and says why. `NO_SOCKET` is left
/// to `--reason`: every scan of a closed port would fill the per-peer map with it.
pub const HANDSHAKE_REASONS: &[&str] =
    &["TCP_LISTEN_OVERFLOW", "TCP_INVALID_SYN", "TCP_CSUM", "TCP_FLAGS", "SOCKET_BACKLOG"];

#[derive(Clone, Debug, Default)]
pub struct ReasonTable {
    by_number: BTreeMap<u32, String>,
    /// Where the names came from, for `netdiag hooks`.
    pub source: &'static str,
}

impl ReasonTable {
    /// `format` is the tracepoint's, when it exists.
    pub fn resolve(btf: &Btf, format: Option<&TracepointFormat>) -> ReasonTable {
        let by_number: BTreeMap<u32, String> = btf
            .enumerators("skb_drop_reason")
            .into_iter()
            .filter_map(|(name, value)| {
                let short = name.strip_prefix(BTF_PREFIX)?;
                Some((u32::try_from(value).ok()?, short.to_string()))
            })
            .collect();
        if !by_number.is_empty() {
            return ReasonTable { by_number, source: "BTF enum skb_drop_reason" };
        }
        ReasonTable::from_symbols(format.map_or(&[], |f| f.symbols.as_slice()))
    }

    pub fn from_symbols(symbols: &[(i64, String)]) -> ReasonTable {
        let by_number = symbols
            .iter()
            .filter_map(|(value, name)| Some((u32::try_from(*value).ok()?, name.clone())))
            .collect();
        ReasonTable { by_number, source: "skb:kfree_skb print format" }
    }

    pub fn number(&self, name: &str) -> Option<u32> {
        self.by_number.iter().find(|(_, n)| n.as_str() == name).map(|(v, _)| *v)
    }

    /// The kernel's spelling of `query` (any case, with or without `SKB_DROP_REASON_`), else a
    /// usage error with the closest names this kernel has.
    pub fn canonical(&self, query: &str) -> Result<String> {
        let wanted = comparable(query);
        if let Some(name) = self.by_number.values().find(|name| comparable(name) == wanted) {
            return Ok(name.clone());
        }
        let mut close: Vec<(usize, &str)> = self
            .by_number
            .values()
            .map(|name| (edit_distance(&wanted, &comparable(name)), name.as_str()))
            .filter(|&(distance, _)| distance <= (wanted.len() / 3).max(2))
            .collect();
        close.sort();
        if close.is_empty() {
            // A fragment of the name (`paws`, `tcp_paws`): the names that hold its words.
            let words: Vec<&str> = wanted.split('_').filter(|w| w.len() > 2).collect();
            close = self
                .by_number
                .values()
                .filter(|name| !words.is_empty() && words.iter().all(|w| comparable(name).contains(w)))
                .map(|name| (0, name.as_str()))
                .collect();
        }
        let hint = match close.as_slice() {
            [] => "`netdiag explain` describes the common ones".to_string(),
            close => format!("did you mean {}?", close.iter().take(3).map(|(_, n)| *n).collect::<Vec<_>>().join(", ")),
        };
        Err(usage(format!("`{query}` is not a drop reason of this kernel ({} known, from {}); {hint}", self.by_number.len(), self.source)))
    }

    /// Name of a reason number; unknown numbers keep their number so nothing is hidden.
    /// netdiag's synthetic reasons (counted by function hooks) carry the kernel's name for the
    /// same drop, so they group and attribute with it.
    pub fn name(&self, number: u32) -> String {
        if number == u32::from(synthetic_reason::TW_PAWS) {
            return "TCP_RFC7323_TW_PAWS".into();
        }
        self.by_number.get(&number).cloned().unwrap_or_else(|| format!("REASON_{number}"))
    }
}

/// The PAWS and handshake reasons plus `extra` (`diagnose --reason`), each checked against the
/// running kernel's drop reasons and spelled as the kernel does.
pub fn watched_with(extra: &[String]) -> Result<Vec<String>> {
    let mut watched: Vec<String> = PAWS_REASONS.iter().chain(HANDSHAKE_REASONS).map(|s| s.to_string()).collect();
    if extra.is_empty() {
        return Ok(watched);
    }
    let format = tracefs::read_format("skb", "kfree_skb").ok();
    let table = ReasonTable::resolve(&Btf::from_sys_fs()?, format.as_ref());
    for query in extra {
        let name = table.canonical(query)?;
        if !watched.contains(&name) {
            watched.push(name);
        }
    }
    Ok(watched)
}

/// Lower case, without the prefix users may leave out.
fn comparable(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    lower.strip_prefix("skb_drop_reason_").unwrap_or(&lower).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_symbols() {
        let table = ReasonTable::from_symbols(&[
            (36, "TCP_RFC7323_PAWS".into()),
            (38, "TCP_RFC7323_TW_PAWS".into()),
        ]);
        assert_eq!(table.number("TCP_RFC7323_TW_PAWS"), Some(38));
        assert_eq!(table.name(36), "TCP_RFC7323_PAWS");
        assert_eq!(table.name(99), "REASON_99");
        assert_eq!(table.number("TCP_RFC7323_TSECR"), None);
    }

    #[test]
    fn canonical_names_accept_any_case_and_suggest_close_ones() {
        let table = ReasonTable::from_symbols(&[(2, "NO_SOCKET".into()), (36, "TCP_RFC7323_PAWS".into())]);
        assert_eq!(table.canonical("no_socket").unwrap(), "NO_SOCKET");
        assert_eq!(table.canonical("SKB_DROP_REASON_NO_SOCKET").unwrap(), "NO_SOCKET");
        let err = table.canonical("NO_SOKET").unwrap_err().to_string();
        assert!(err.contains("did you mean NO_SOCKET?"), "{err}");
        let err = table.canonical("tcp_paws").unwrap_err().to_string();
        assert!(err.contains("did you mean TCP_RFC7323_PAWS?"), "{err}");
        let err = table.canonical("SOMETHING_ELSE_ENTIRELY").unwrap_err().to_string();
        assert!(err.contains("not a drop reason of this kernel"), "{err}");
        assert!(!err.contains("did you mean"), "{err}");
    }

    #[test]
    fn the_synthetic_time_wait_reason_has_the_kernel_name_but_no_kernel_number() {
        let table = ReasonTable::from_symbols(&[(36, "TCP_RFC7323_PAWS".into())]);
        assert_eq!(table.name(u32::from(synthetic_reason::TW_PAWS)), "TCP_RFC7323_TW_PAWS");
        // The drop program is never told to watch it: where the kernel lacks the reason, it lacks it.
        assert_eq!(table.number("TCP_RFC7323_TW_PAWS"), None);
    }
}
