//! The addresses a namespace holds, read through any process in it (`/proc/PID/net/...`
//! shows the process's namespace), so no thread has to enter it.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Local IPv4 addresses from `/proc/PID/net/fib_trie`: each `|-- ADDR` leaf followed by a
/// `/32 host LOCAL` route; loopback is left out.
pub fn local_v4(fib_trie: &str) -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let line = line.trim_start();
        if let Some(addr) = line.strip_prefix("|-- ") {
            leaf = addr.trim().parse().ok();
        } else if line.starts_with("/32 host LOCAL")
            && let Some(addr) = leaf.filter(|a| !a.is_loopback())
            && !found.contains(&IpAddr::V4(addr))
        {
            found.push(IpAddr::V4(addr));
        }
    }
    found
}

/// IPv6 addresses from `/proc/PID/net/if_inet6` (32 hex digits first on each line); loopback
/// and link-local are left out.
pub fn local_v6(if_inet6: &str) -> Vec<IpAddr> {
    if_inet6
        .lines()
        .filter_map(|line| u128::from_str_radix(line.split_whitespace().next()?, 16).ok())
        .map(Ipv6Addr::from)
        .filter(|a| !a.is_loopback() && !a.is_unicast_link_local())
        .map(IpAddr::V6)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_local_v4_leaves_only() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     +-- 127.0.0.0/8 2 0 2\n        |-- 127.0.0.1\n           /32 host LOCAL\n\
                    |-- 198.51.100.0\n           /24 link UNICAST\n     |-- 198.51.100.1\n        /32 host LOCAL\n\
                    Local:\n     |-- 198.51.100.1\n        /32 host LOCAL\n     |-- 198.51.100.255\n        /32 link BROADCAST\n";
        assert_eq!(local_v4(trie), vec!["198.51.100.1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn reads_global_v6_addresses() {
        let text = "20010db8000100000000000000000001 02 40 00 80 veth0\n\
                    fe80000000000000b0a1fffffe000001 02 40 20 80 veth0\n\
                    00000000000000000000000000000001 01 80 10 80 lo\n";
        assert_eq!(local_v6(text), vec!["2001:db8:1::1".parse::<IpAddr>().unwrap()]);
    }
}
