//! netdiag reads struct offsets from the kernel's BTF with its own parser: a malformed blob is
//! an error, never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(btf) = netdiag::btf::Btf::from_bytes(data) {
        let _ = btf.member_offset("sk_buff", &["head"]);
        let _ = btf.member_offset("sock_common", &["skc_net", "net"]);
        let _ = btf.enum_value("skb_drop_reason", "SKB_DROP_REASON_TCP_RFC7323_PAWS");
    }
});
