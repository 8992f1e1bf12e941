//! IP networks, and the client address behind trusted proxies.
//!
//! Everything here fails closed: an address that cannot be read exactly is not guessed at,
//! because an allowlist that matches a misread address is worse than one that matches nothing.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 network.
///
/// Kept in the family it was written in, so it displays as written. [`Cidr::contains`]
/// treats an IPv4 address and its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`) as the same
/// address: a dual-stack listener reports IPv4 clients in the mapped form, and whether an
/// allowlist matches must not depend on how the proxy bound its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address; its host bits are zero ([`Cidr::parse`] refuses anything else).
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// "10.0.0.0/8", "192.168.1.7" (a host: /32), "fd00::/8", "::1" (a host: /128).
    ///
    /// Refused, each with an error naming the input and the fix:
    /// - host bits set beyond the prefix ("10.0.0.1/8"): the writer meant either the network
    ///   or the host, and guessing either silently widens or narrows an allowlist;
    /// - prefix lengths out of range, or written with a sign or leading zeros;
    /// - zone ids ("fe80::1%eth0"): a zone names an interface on one machine, and peer
    ///   addresses never carry one, so the rule could not mean what it says;
    /// - leading zeros in IPv4 octets ("010.0.0.1"): inet_aton and many tools read them as
    ///   octal (010 = 8), so two readers of the same config would disagree;
    /// - empty strings and surrounding whitespace.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        if s.is_empty() {
            return Err(
                "empty network — write an address (\"192.168.1.7\", \"::1\") or a network (\"10.0.0.0/8\", \"fd00::/8\")"
                    .to_string(),
            );
        }
        if s.trim() != s {
            return Err(format!("{s:?} — remove the surrounding whitespace"));
        }
        let (addr_s, prefix_s) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        if let Some(at) = addr_s.find('%') {
            let zone = addr_s.get(at..).unwrap_or_default();
            return Err(format!(
                "{s:?}: zone ids ({zone}) are not supported — a zone names an interface on one host and peer addresses never carry one; remove it"
            ));
        }
        // The IPv4 part is the whole address, or the tail of an IPv6 address such as
        // "::ffff:10.0.0.1".
        let v4_part = addr_s.rsplit(':').next().unwrap_or_default();
        if v4_part.contains('.')
            && v4_part
                .split('.')
                .any(|octet| octet.len() > 1 && octet.starts_with('0'))
        {
            return Err(format!(
                "{s:?}: leading zeros in an IPv4 octet are ambiguous (some parsers read 010 as octal 8) — write the octets in plain decimal"
            ));
        }
        let addr: IpAddr = addr_s.parse().map_err(|_| {
            format!("{s:?} is not an IP address or network — write e.g. \"192.168.1.7\", \"10.0.0.0/8\", \"::1\" or \"fd00::/8\"")
        })?;
        let max = max_prefix(addr);
        let prefix = match prefix_s {
            None => max,
            Some(p) => parse_prefix(p, max).ok_or_else(|| {
                format!(
                    "{s:?}: prefix length {p:?} is out of range — write a decimal number from 0 to {max} for {}",
                    family(addr)
                )
            })?,
        };
        let network = mask_addr(addr, prefix);
        if network != addr {
            return Err(host_bits_set(s, prefix, network, addr));
        }
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside this network. IPv4 and IPv4-mapped IPv6 addresses match each
    /// other's networks (see [`Cidr`]); so `0.0.0.0/0` also holds every `::ffff:a.b.c.d`,
    /// and `::/0` holds every IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        // Compare in IPv6 space, where an IPv4 /n is the mapped /(96 + n).
        let (net, prefix) = match self.addr {
            IpAddr::V4(a) => (
                u128::from(a.to_ipv6_mapped()),
                self.prefix.saturating_add(96),
            ),
            IpAddr::V6(a) => (u128::from(a), self.prefix),
        };
        let ip = match ip {
            IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
            IpAddr::V6(a) => u128::from(a),
        };
        (ip ^ net) & mask128(prefix) == 0
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The refusal of a network with host bits set. Natively (`barbican check`, `serve`) it
/// names the network to write; the wasm filters name the rule only, because formatting an
/// address would bring ~2 KB of std's address printing into a module at its size limit.
fn host_bits_set(s: &str, prefix: u8, network: IpAddr, addr: IpAddr) -> String {
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (network, addr);
        format!(
            "{s:?} has host bits set beyond the /{prefix} prefix — write the network with those bits zero, or the single host without a prefix (`barbican check` names both)"
        )
    }
    #[cfg(not(target_arch = "wasm32"))]
    format!(
        "{s:?} has host bits set beyond the /{prefix} prefix — write {network}/{prefix} for the network, or {addr} for the single host"
    )
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn family(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// Plain decimal only: `u8::from_str` would take "+8", and "08" reads as octal to some tools.
fn parse_prefix(p: &str, max: u8) -> Option<u8> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || (p.len() > 1 && p.starts_with('0'))
    {
        return None;
    }
    p.parse::<u8>().ok().filter(|&n| n <= max)
}

/// The top `prefix` bits set; `prefix` is at most 128.
fn mask128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0)
}

fn mask_addr(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX
                .checked_shl(32u32.saturating_sub(u32::from(prefix)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix))),
    }
}

/// Parses Envoy's `source.address` property ("1.2.3.4:5678", "[::1]:5678", or without a
/// port). IPv4-mapped IPv6 comes back as IPv4, so logs and headers show one form per client.
/// Anything else (a Unix socket path, a zone id) is `None`.
pub fn parse_peer(s: &str) -> Option<IpAddr> {
    parse_endpoint(s)
}

/// One address with an optional port: "1.2.3.4", "1.2.3.4:80", "::1", "[::1]", "[::1]:80".
/// An unbracketed IPv6 address never has a port ("::1:80" is the address ::1:80), as in
/// RFC 3986 §3.2.2. Zone ids are refused: std would accept "[fe80::1%1]:80" as a socket
/// address, but a zoned address is meaningful on one host only.
fn parse_endpoint(s: &str) -> Option<IpAddr> {
    if s.contains('%') {
        return None;
    }
    let ip = if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !after.is_empty() && !is_port(after.strip_prefix(':')?) {
            return None;
        }
        IpAddr::V6(inner.parse::<Ipv6Addr>().ok()?)
    } else if let Ok(ip) = s.parse::<IpAddr>() {
        ip
    } else {
        let (host, port) = s.rsplit_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(host.parse::<Ipv4Addr>().ok()?)
    };
    Some(ip.to_canonical())
}

fn is_port(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u16>().is_ok()
}

/// The client address: `peer` unless it is a trusted proxy; then walk X-Forwarded-For from
/// the right (all values of all XFF headers joined in order, comma separated), skipping
/// trusted proxies, and return the first untrusted address. If every hop is trusted, the
/// leftmost. No XFF and a trusted peer: the peer. `peer` None: None.
///
/// Why from the right: each proxy appends the address it received the request from, so
/// the entries right of the last untrusted hop were written by proxies we trust, while
/// everything left of it is whatever the client chose to send. Taking the leftmost entry
/// would let any client name itself 127.0.0.1. For the same reason, XFF from an untrusted
/// peer is ignored entirely: that peer wrote all of it.
///
/// Any unparsable entry met during the walk stops it and yields `None`: an allowlist must
/// not match a garbled chain, and skipping the entry would hand the choice of address to
/// whoever garbled it. Entries left of the first untrusted address are never read, so
/// client-sent junk there is harmless. Empty list elements ("a,,b", a trailing comma) are
/// skipped, as RFC 9110 §5.6.1 requires of list-valued headers. Entries may carry a port
/// ("1.2.3.4:80", "[::1]:80") and surrounding spaces or tabs. The answer is canonical:
/// IPv4-mapped IPv6 comes back as IPv4.
pub fn client_ip(peer: Option<IpAddr>, xff: &[&str], trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut leftmost = peer;
    let entries = xff
        .iter()
        .rev()
        .flat_map(|v| v.rsplit(','))
        .map(|e| e.trim_matches([' ', '\t']))
        .filter(|e| !e.is_empty());
    for entry in entries {
        let ip = parse_endpoint(entry)?;
        if !is_trusted(ip) {
            return Some(ip);
        }
        leftmost = ip;
    }
    Some(leftmost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    fn nets(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| cidr(s)).collect()
    }

    // ---- Cidr::parse ----

    #[test]
    fn networks_and_bare_hosts_parse() {
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("192.168.1.7").to_string(), "192.168.1.7/32");
        assert_eq!(cidr("192.168.1.7/32").to_string(), "192.168.1.7/32");
        assert_eq!(cidr("fd00::/8").to_string(), "fd00::/8");
        assert_eq!(cidr("::1").to_string(), "::1/128");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("::/0").to_string(), "::/0");
        assert_eq!(
            cidr("::ffff:10.0.0.0/104").to_string(),
            "::ffff:10.0.0.0/104"
        );
    }

    #[test]
    #[cfg(target_arch = "wasm32")]
    fn host_bits_beyond_prefix_are_refused_in_wasm_too() {
        let e = Cidr::parse("10.0.0.1/8").unwrap_err();
        assert!(e.contains("host bits set beyond the /8 prefix"), "{e}");
    }

    #[test]
    #[cfg(not(target_arch = "wasm32"))]
    fn host_bits_beyond_prefix_are_refused_naming_the_network_meant() {
        let e = Cidr::parse("10.0.0.1/8").unwrap_err();
        assert!(e.contains("10.0.0.0/8"), "{e}");
        assert!(e.contains("10.0.0.1 for the single host"), "{e}");
        let e = Cidr::parse("fd00::1/8").unwrap_err();
        assert!(e.contains("fd00::/8"), "{e}");
        let e = Cidr::parse("192.168.1.130/25").unwrap_err();
        assert!(e.contains("192.168.1.128/25"), "{e}");
    }

    #[test]
    fn prefix_lengths_out_of_range_or_oddly_written_are_refused() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/08",
            "10.0.0.0/ 8",
            "10.0.0.0/8/8",
            "10.0.0.0/256",
            "10.0.0.0/99999999999999999999",
            "10.0.0.0/0x8",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad} accepted");
        }
        let e = Cidr::parse("10.0.0.0/33").unwrap_err();
        assert!(e.contains("0 to 32 for IPv4"), "{e}");
        let e = Cidr::parse("::/129").unwrap_err();
        assert!(e.contains("0 to 128 for IPv6"), "{e}");
    }

    #[test]
    fn zone_ids_are_refused() {
        let e = Cidr::parse("fe80::1%eth0").unwrap_err();
        assert!(e.contains("%eth0"), "{e}");
        assert!(Cidr::parse("fe80::%1/64").is_err());
    }

    #[test]
    fn leading_zeros_in_ipv4_octets_are_refused_as_ambiguous_octal() {
        for bad in ["010.0.0.1", "10.0.0.01", "10.00.0.0/16", "::ffff:010.0.0.1"] {
            let e = Cidr::parse(bad).unwrap_err();
            assert!(e.contains("octal"), "{bad}: {e}");
        }
        // A lone zero octet is plain decimal.
        assert!(Cidr::parse("10.0.0.0").is_ok());
    }

    #[test]
    fn empty_garbled_and_padded_inputs_are_refused() {
        for bad in [
            "",
            " ",
            "/8",
            "10.0.0.0 ",
            " 10.0.0.0/8",
            "10/8",
            "10.1",
            "0x0a.0.0.0/8",
            "256.0.0.0/8",
            "example.com",
            "[::1]",
            "::1:80:",
            "1.2.3.4:80",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Cidr::parse("").unwrap_err().contains("empty"));
    }

    // ---- Cidr::contains ----

    #[test]
    fn ipv4_containment_respects_the_prefix() {
        let n = cidr("10.0.0.0/8");
        assert!(n.contains(ip("10.0.0.0")));
        assert!(n.contains(ip("10.255.255.255")));
        assert!(!n.contains(ip("11.0.0.0")));
        assert!(!n.contains(ip("9.255.255.255")));
        let n = cidr("192.168.1.128/25");
        assert!(n.contains(ip("192.168.1.200")));
        assert!(!n.contains(ip("192.168.1.127")));
    }

    #[test]
    fn ipv6_containment_respects_the_prefix() {
        let n = cidr("fd00::/8");
        assert!(n.contains(ip("fd12:3456::1")));
        assert!(!n.contains(ip("fe80::1")));
        let n = cidr("2001:db8::/33");
        assert!(n.contains(ip("2001:db8:7fff::1")));
        assert!(!n.contains(ip("2001:db8:8000::1")));
    }

    #[test]
    fn families_do_not_mix_except_through_the_mapped_form() {
        assert!(!cidr("10.0.0.0/8").contains(ip("fd00::1")));
        assert!(!cidr("fd00::/8").contains(ip("10.0.0.1")));
        // The deprecated IPv4-compatible form ::a.b.c.d is plain IPv6, not IPv4.
        assert!(!cidr("10.0.0.0/8").contains(ip("::10.0.0.1")));
        assert!(!cidr("0.0.0.1").contains(ip("::1")));
    }

    #[test]
    fn ipv4_mapped_ipv6_matches_ipv4_networks_and_vice_versa() {
        assert!(cidr("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(!cidr("10.0.0.0/8").contains(ip("::ffff:11.1.2.3")));
        assert!(cidr("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        assert!(cidr("::ffff:10.0.0.0/104").contains(ip("10.1.2.3")));
        assert!(!cidr("::ffff:10.0.0.0/104").contains(ip("11.1.2.3")));
        assert!(cidr("::ffff:0:0/96").contains(ip("203.0.113.9")));
        assert!(cidr("::ffff:127.0.0.1").contains(ip("127.0.0.1")));
    }

    #[test]
    fn zero_prefix_holds_everything_of_its_family() {
        let v4 = cidr("0.0.0.0/0");
        assert!(v4.contains(ip("0.0.0.0")));
        assert!(v4.contains(ip("255.255.255.255")));
        assert!(v4.contains(ip("::ffff:1.2.3.4")));
        assert!(!v4.contains(ip("::1")));
        let v6 = cidr("::/0");
        assert!(v6.contains(ip("::")));
        assert!(v6.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        // Every IPv4 address is some ::ffff:a.b.c.d.
        assert!(v6.contains(ip("1.2.3.4")));
    }

    #[test]
    fn full_length_prefix_holds_exactly_one_address() {
        let h = cidr("192.168.1.7/32");
        assert!(h.contains(ip("192.168.1.7")));
        assert!(!h.contains(ip("192.168.1.6")));
        assert!(!h.contains(ip("192.168.1.8")));
        let h = cidr("255.255.255.255");
        assert!(h.contains(ip("255.255.255.255")));
        assert!(!h.contains(ip("255.255.255.254")));
        let h = cidr("::1/128");
        assert!(h.contains(ip("::1")));
        assert!(!h.contains(ip("::2")));
        assert!(!h.contains(ip("::")));
        let h = cidr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert!(h.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!h.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")));
    }

    // ---- parse_peer ----

    #[test]
    fn envoy_source_addresses_parse_with_or_without_port() {
        assert_eq!(parse_peer("1.2.3.4:5678"), Some(ip("1.2.3.4")));
        assert_eq!(parse_peer("1.2.3.4"), Some(ip("1.2.3.4")));
        assert_eq!(parse_peer("[::1]:5678"), Some(ip("::1")));
        assert_eq!(parse_peer("[::1]"), Some(ip("::1")));
        assert_eq!(parse_peer("::1"), Some(ip("::1")));
        assert_eq!(parse_peer("[2001:db8::7]:443"), Some(ip("2001:db8::7")));
    }

    #[test]
    fn mapped_peer_comes_back_as_ipv4() {
        assert_eq!(parse_peer("[::ffff:10.0.0.5]:41000"), Some(ip("10.0.0.5")));
        assert_eq!(parse_peer("::ffff:10.0.0.5"), Some(ip("10.0.0.5")));
    }

    #[test]
    fn unbracketed_ipv6_never_has_a_port() {
        // "::1:80" is an address, not ::1 port 80.
        assert_eq!(parse_peer("::1:80"), Some(ip("::1:80")));
    }

    #[test]
    fn malformed_peers_are_none() {
        for bad in [
            "",
            "/var/run/envoy.sock",
            "1.2.3.4:",
            "1.2.3.4:65536",
            "1.2.3.4:http",
            "1.2.3.4:+80",
            "[::1]:",
            "[::1]80",
            "[::1",
            "[1.2.3.4]:80",
            "[fe80::1%1]:80",
            "fe80::1%eth0",
            "010.0.0.1:80",
            "1.2.3.4:80:80",
            " 1.2.3.4",
        ] {
            assert_eq!(parse_peer(bad), None, "{bad:?}");
        }
    }

    // ---- client_ip ----

    const EDGE: &str = "10.0.0.1";
    const INNER: &str = "10.0.0.2";

    fn proxies() -> Vec<Cidr> {
        nets(&["10.0.0.0/24", "fd00::/8"])
    }

    #[test]
    fn no_peer_means_no_client() {
        assert_eq!(client_ip(None, &["1.2.3.4"], &proxies()), None);
    }

    #[test]
    fn spoofed_xff_from_an_untrusted_peer_is_ignored() {
        let got = client_ip(
            Some(ip("203.0.113.9")),
            &["127.0.0.1, 10.0.0.1"],
            &proxies(),
        );
        assert_eq!(got, Some(ip("203.0.113.9")));
    }

    #[test]
    fn untrusted_peer_wins_even_with_no_trusted_proxies_configured() {
        let got = client_ip(Some(ip("10.0.0.1")), &["1.2.3.4"], &[]);
        assert_eq!(got, Some(ip("10.0.0.1")));
    }

    #[test]
    fn trusted_peer_without_xff_is_the_client() {
        assert_eq!(client_ip(Some(ip(EDGE)), &[], &proxies()), Some(ip(EDGE)));
        assert_eq!(client_ip(Some(ip(EDGE)), &[""], &proxies()), Some(ip(EDGE)));
    }

    #[test]
    fn rightmost_untrusted_is_chosen_through_two_trusted_hops() {
        // The client claimed 127.0.0.1; the edge appended the real client, the inner proxy
        // appended the edge; the inner proxy is our peer.
        let xff = format!("127.0.0.1, 198.51.100.7, {EDGE}");
        let got = client_ip(Some(ip(INNER)), &[&xff], &proxies());
        assert_eq!(got, Some(ip("198.51.100.7")));
    }

    #[test]
    fn every_hop_trusted_yields_the_leftmost() {
        let xff = format!("10.0.0.9, {EDGE}");
        let got = client_ip(Some(ip(INNER)), &[&xff], &proxies());
        assert_eq!(got, Some(ip("10.0.0.9")));
    }

    #[test]
    fn multiple_xff_headers_are_read_as_one_list_in_order() {
        let got = client_ip(
            Some(ip(INNER)),
            &["127.0.0.1, 198.51.100.7", EDGE],
            &proxies(),
        );
        assert_eq!(got, Some(ip("198.51.100.7")));
        // The right end of the last header is the nearest hop.
        let got = client_ip(Some(ip(INNER)), &[EDGE, "198.51.100.7"], &proxies());
        assert_eq!(got, Some(ip("198.51.100.7")));
    }

    #[test]
    fn garbage_met_during_the_walk_fails_closed() {
        for xff in [
            "1.2.3.4, garbage, 10.0.0.1",
            "1.2.3.4, unknown",
            "1.2.3.4, _hidden",
            "1.2.3.4, 10.0.0.1 10.0.0.3",
            "1.2.3.4, 010.0.0.1",
            "1.2.3.4, fe80::1%eth0",
            "1.2.3.4, 10.0.0.1:99999",
            "1.2.3.4; 10.0.0.1",
        ] {
            assert_eq!(
                client_ip(Some(ip(INNER)), &[xff], &proxies()),
                None,
                "{xff:?}"
            );
        }
        assert_eq!(
            client_ip(Some(ip(INNER)), &["1.2.3.4", "garbage"], &proxies()),
            None
        );
    }

    #[test]
    fn garbage_left_of_the_client_is_never_read() {
        let got = client_ip(
            Some(ip(INNER)),
            &["garbage, 198.51.100.7, 10.0.0.1"],
            &proxies(),
        );
        assert_eq!(got, Some(ip("198.51.100.7")));
    }

    #[test]
    fn entries_with_ports_are_accepted() {
        let got = client_ip(Some(ip(INNER)), &["1.2.3.4:80, 10.0.0.1:443"], &proxies());
        assert_eq!(got, Some(ip("1.2.3.4")));
        let got = client_ip(
            Some(ip(INNER)),
            &["[2001:db8::1]:80, [fd00::1]:80"],
            &proxies(),
        );
        assert_eq!(got, Some(ip("2001:db8::1")));
        let got = client_ip(Some(ip(INNER)), &["[::1]:80"], &proxies());
        assert_eq!(got, Some(ip("::1")));
        let got = client_ip(Some(ip(INNER)), &["[2001:db8::1], fd00::1"], &proxies());
        assert_eq!(got, Some(ip("2001:db8::1")));
    }

    #[test]
    fn whitespace_and_empty_elements_around_entries_are_ignored() {
        let got = client_ip(
            Some(ip(INNER)),
            &["  198.51.100.7 ,\t10.0.0.1\t,, ,"],
            &proxies(),
        );
        assert_eq!(got, Some(ip("198.51.100.7")));
    }

    #[test]
    fn mapped_addresses_are_trusted_and_returned_as_ipv4() {
        let got = client_ip(
            Some(ip("::ffff:10.0.0.2")),
            &["::ffff:198.51.100.7, ::ffff:10.0.0.1"],
            &proxies(),
        );
        assert_eq!(got, Some(ip("198.51.100.7")));
        let got = client_ip(Some(ip("::ffff:203.0.113.9")), &[], &proxies());
        assert_eq!(got, Some(ip("203.0.113.9")));
    }

    #[test]
    fn ipv6_proxies_chain_like_ipv4() {
        let got = client_ip(
            Some(ip("fd00::2")),
            &["2001:db8::bad, 2001:db8::7, fd00::1"],
            &proxies(),
        );
        assert_eq!(got, Some(ip("2001:db8::7")));
    }
}
