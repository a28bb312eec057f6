//! The proxies whose word on the client's address is believed (`--trusted-proxies`): a forwarded-for header is
//! read only on a request whose peer is one of them, so a client that reaches the API directly cannot pick its
//! own address and walk around the per-address limits.

use std::net::IpAddr;

pub use natter_service::net::Network;

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
