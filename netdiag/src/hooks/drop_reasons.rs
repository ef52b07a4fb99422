//! Drop-reason numbers differ between kernels: resolve them by name on the running one, from
//! BTF's `enum skb_drop_reason`, else from the tracepoint's `__print_symbolic` table.
use std::collections::BTreeMap;

use netdiag_common::synthetic_reason;

use crate::{btf::Btf, tracefs::TracepointFormat};

const BTF_PREFIX: &str = "SKB_DROP_REASON_";

/// Drop reasons of the PAWS checks (RFC 7323), by kernel name without the prefix.
pub const PAWS_REASONS: &[&str] =
    &["TCP_RFC7323_PAWS", "TCP_RFC7323_PAWS_ACK", "TCP_RFC7323_TW_PAWS", "TCP_RFC7323_TSECR"];

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
    fn the_synthetic_time_wait_reason_has_the_kernel_name_but_no_kernel_number() {
        let table = ReasonTable::from_symbols(&[(36, "TCP_RFC7323_PAWS".into())]);
        assert_eq!(table.name(u32::from(synthetic_reason::TW_PAWS)), "TCP_RFC7323_TW_PAWS");
        // The drop program is never told to watch it: where the kernel lacks the reason, it lacks it.
        assert_eq!(table.number("TCP_RFC7323_TW_PAWS"), None);
    }
}
