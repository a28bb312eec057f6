//! The proxies whose word on the client's address is believed (`--trusted-proxies`): a forwarded-for header is
//! read only on a request whose peer is one of them, so a client that reaches the API directly cannot pick its
//! own address and walk around the per-address limits.

use std::net::IpAddr;
use std::str::FromStr;

/// An address block, `10.0.0.0/8` or `fd00::/8`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.base, ip) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(base) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(base) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((_, "")) => return Err(format!("{s:?}: a prefix length must follow the /")),
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let base: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or an address block (10.0.0.0/8)"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { base, prefix })
    }
}

/// The client's address from the forwarded-for `values` (every line of the header, in order) of a request a
/// trusted proxy (`peer`) passed on: the rightmost address no proxy of `trusted` holds, since each proxy appends
/// the address it was reached from and anything further left is whatever the client wrote. `peer` when the
/// header holds nothing usable.
pub fn client_address<'a>(
    peer: IpAddr,
    values: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[Network],
) -> IpAddr {
    let mut client = peer;
    for entry in values.rev().flat_map(|v| v.rsplit(',')) {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            return client;
        };
        client = ip;
        if !trusted.iter().any(|n| n.contains(ip)) {
            return ip;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Network> {
        list.iter().map(|s| s.parse().expect("network")).collect()
    }

    #[test]
    fn blocks_parse_and_contain_their_addresses() {
        let n: Network = "10.1.0.0/16".parse().expect("v4");
        assert!(n.contains("10.1.200.3".parse().expect("ip")));
        assert!(!n.contains("10.2.0.1".parse().expect("ip")));
        assert!(n.contains("::ffff:10.1.0.9".parse().expect("mapped")));
        let one: Network = "127.0.0.1".parse().expect("bare");
        assert!(one.contains("127.0.0.1".parse().expect("ip")) && !one.contains("127.0.0.2".parse().expect("ip")));
        let v6: Network = "fd00::/8".parse().expect("v6");
        assert!(v6.contains("fd12::1".parse().expect("ip")) && !v6.contains("fe80::1".parse().expect("ip")));
        assert!(
            "0.0.0.0/0"
                .parse::<Network>()
                .expect("all")
                .contains("8.8.8.8".parse().expect("ip"))
        );
        for bad in ["10.0.0.0/33", "x/8", "10.0.0.0/", "::/129", ""] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_rightmost_address_no_trusted_proxy_holds_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.5".parse().expect("ip");
        let client = |values: &[&str]| client_address(peer, values.iter().copied(), &trusted).to_string();
        assert_eq!(client(&["203.0.113.7"]), "203.0.113.7");
        // What the client wrote itself is further left than what the proxies appended.
        assert_eq!(client(&["1.2.3.4, 203.0.113.7"]), "203.0.113.7");
        assert_eq!(client(&["1.2.3.4, 203.0.113.7, 10.0.0.9"]), "203.0.113.7");
        assert_eq!(client(&["1.2.3.4", "203.0.113.7"]), "203.0.113.7");
        assert_eq!(client(&["garbage, 203.0.113.7"]), "203.0.113.7");
        assert_eq!(client(&["203.0.113.7, garbage"]), "10.0.0.5");
        assert_eq!(client(&[]), "10.0.0.5");
        assert_eq!(client(&["10.0.0.7"]), "10.0.0.7", "only proxies: the first of them");
    }
}
