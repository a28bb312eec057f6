//! The PROXY protocol (v1 text and v2 binary, as HAProxy's `send-proxy` and `send-proxy-v2` write it): a load
//! balancer in front of the gateways tells each connection's real client address in a header before the HTTP
//! request, so the per-address caps and the logs see clients, not the balancer. Read only on connections from
//! `--proxy-protocol-from`; from there, a connection without a valid header is closed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 header's first 12 bytes.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// The longest v2 address block accepted (addresses and TLVs); HAProxy's are far shorter.
const V2_MAX_BLOCK: usize = 1024;

/// Why a header was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Neither a v1 nor a v2 header.
    NotProxyProtocol,
    /// A header that does not parse.
    Malformed,
    /// The connection ended first.
    Closed,
}

impl Refused {
    /// The metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotProxyProtocol => "missing",
            Self::Malformed => "malformed",
            Self::Closed => "closed",
        }
    }
}

/// Reads the PROXY header at the start of `tcp`, consuming exactly its bytes (the HTTP request after it is left
/// for hyper): the client's address, or `None` when the header names none (v2 LOCAL, as a balancer's health check
/// sends, or v1 UNKNOWN).
pub async fn read_header(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, Refused> {
    let mut start = [0u8; 6];
    tcp.read_exact(&mut start).await.map_err(|_| Refused::Closed)?;
    if &start == b"PROXY " {
        // v1: up to its CRLF, a byte at a time so that nothing past it is read (balancers in front of Natter are
        // told to send v2, which says its length).
        let mut line = start.to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err(Refused::Malformed);
            }
            line.push(tcp.read_u8().await.map_err(|_| Refused::Closed)?);
        }
        return parse_v1(&line[..line.len() - 2]);
    }
    if start != V2_SIGNATURE[..6] {
        return Err(Refused::NotProxyProtocol);
    }
    let mut rest = [0u8; 10];
    tcp.read_exact(&mut rest).await.map_err(|_| Refused::Closed)?;
    if rest[..6] != V2_SIGNATURE[6..] {
        return Err(Refused::NotProxyProtocol);
    }
    let len = usize::from(u16::from_be_bytes([rest[8], rest[9]]));
    if len > V2_MAX_BLOCK {
        return Err(Refused::Malformed);
    }
    let mut block = vec![0u8; len];
    tcp.read_exact(&mut block).await.map_err(|_| Refused::Closed)?;
    parse_v2(rest[6], rest[7], &block)
}

/// Parses a v1 line without its CRLF.
pub fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, Refused> {
    let line = std::str::from_utf8(line).map_err(|_| Refused::Malformed)?;
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        ["PROXY", family @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: IpAddr = src.parse().map_err(|_| Refused::Malformed)?;
            if (*family == "TCP4") != ip.is_ipv4() {
                return Err(Refused::Malformed);
            }
            let port: u16 = sport.parse().map_err(|_| Refused::Malformed)?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(Refused::Malformed),
    }
}

/// Parses v2's version and command byte, family byte and address block.
pub fn parse_v2(version_command: u8, family: u8, block: &[u8]) -> Result<Option<SocketAddr>, Refused> {
    if version_command >> 4 != 2 {
        return Err(Refused::Malformed);
    }
    match version_command & 0x0f {
        // LOCAL: the balancer's own connection (a health check); the peer is the address.
        0 => return Ok(None),
        1 => {}
        _ => return Err(Refused::Malformed),
    }
    match family {
        // TCP over IPv4: source, destination, source port, destination port.
        0x11 if block.len() >= 12 => {
            let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            Ok(Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([block[8], block[9]]),
            )))
        }
        0x21 if block.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&block[..16]);
            let ip = Ipv6Addr::from(octets);
            Ok(Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([block[32], block[33]]),
            )))
        }
        // UNSPEC, or a family that is not TCP over IP: no address to believe.
        0x00 => Ok(None),
        _ => Err(Refused::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines_parse_and_anything_else_is_refused() {
        assert_eq!(
            parse_v1(b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 9001"),
            Ok(Some("203.0.113.7:5555".parse().expect("addr")))
        );
        assert_eq!(
            parse_v1(b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 9001"),
            Ok(Some("[2001:db8::1]:40000".parse().expect("addr")))
        );
        assert_eq!(parse_v1(b"PROXY UNKNOWN"), Ok(None));
        for bad in [
            &b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2"[..],
            b"PROXY TCP4 203.0.113.7 10.0.0.1 99999 9001",
            b"PROXY TCP4 nonsense 10.0.0.1 1 2",
            b"PROXY TCP4 203.0.113.7",
            b"PROXY UDP4 203.0.113.7 10.0.0.1 1 2",
            b"GET / HTTP/1.1",
        ] {
            assert_eq!(
                parse_v1(bad),
                Err(Refused::Malformed),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn v2_blocks_parse_and_a_local_command_names_no_client() {
        let v4 = [203, 0, 113, 7, 10, 0, 0, 1, 0x15, 0xb3, 0x23, 0x29];
        assert_eq!(
            parse_v2(0x21, 0x11, &v4),
            Ok(Some("203.0.113.7:5555".parse().expect("addr")))
        );
        let mut v6 = [0u8; 36];
        v6[0] = 0x20;
        v6[1] = 0x01;
        v6[15] = 1;
        v6[32] = 0x9c;
        v6[33] = 0x40;
        assert_eq!(
            parse_v2(0x21, 0x21, &v6),
            Ok(Some("[2001::1]:40000".parse().expect("addr")))
        );
        assert_eq!(parse_v2(0x20, 0x11, &v4), Ok(None), "LOCAL");
        assert_eq!(parse_v2(0x21, 0x00, &[]), Ok(None), "UNSPEC");
        assert_eq!(
            parse_v2(0x11, 0x11, &v4),
            Err(Refused::Malformed),
            "version 1 in a v2 header"
        );
        assert_eq!(parse_v2(0x22, 0x11, &v4), Err(Refused::Malformed), "unknown command");
        assert_eq!(parse_v2(0x21, 0x11, &v4[..8]), Err(Refused::Malformed), "short block");
        assert_eq!(parse_v2(0x21, 0x12, &v4), Err(Refused::Malformed), "UDP");
    }
}
