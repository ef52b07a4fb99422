//! `--peer IP|CIDR`: which remote addresses a report covers.
use std::{net::IpAddr, str::FromStr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerFilter {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for PeerFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr =
            addr.parse().map_err(|_| format!("`{text}` is not an IP address or CIDR (e.g. 198.51.100.7 or 2001:db8::/32)"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: prefix length must be 0..={max}"))?,
        };
        Ok(PeerFilter { network, prefix })
    }
}

/// The one address.
impl From<IpAddr> for PeerFilter {
    fn from(addr: IpAddr) -> Self {
        PeerFilter { network: addr, prefix: if addr.is_ipv4() { 32 } else { 128 } }
    }
}

impl PeerFilter {
    pub fn contains(&self, addr: IpAddr) -> bool {
        let to_bits = |a: IpAddr| -> Option<u128> {
            match (self.network, a) {
                (IpAddr::V4(_), IpAddr::V4(a)) => Some(u32::from(a) as u128),
                (IpAddr::V6(_), IpAddr::V6(a)) => Some(u128::from(a)),
                _ => None,
            }
        };
        let (Some(net), Some(addr)) = (to_bits(self.network), to_bits(addr)) else {
            return false;
        };
        let width = if self.network.is_ipv4() { 32 } else { 128 };
        let shift = width - self.prefix as u32;
        shift >= width || (net >> shift) == (addr >> shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn matches_single_addresses_and_prefixes() {
        let one: PeerFilter = "198.51.100.7".parse().unwrap();
        assert!(one.contains(ip("198.51.100.7")));
        assert!(!one.contains(ip("198.51.100.8")));
        let net: PeerFilter = "198.51.100.0/24".parse().unwrap();
        assert!(net.contains(ip("198.51.100.200")) && !net.contains(ip("203.0.113.1")));
        let v6: PeerFilter = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::2")) && !v6.contains(ip("198.51.100.7")));
        let all: PeerFilter = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
    }

    #[test]
    fn rejects_what_does_not_parse() {
        assert!("198.51.100".parse::<PeerFilter>().is_err());
        assert!("198.51.100.0/33".parse::<PeerFilter>().is_err());
        assert!("host.example".parse::<PeerFilter>().is_err());
    }
}
