//! Which IP addresses are on the public internet.
//!
//! A name under an attacker's control can resolve to 127.0.0.1 or 169.254.169.254, so egress
//! checks the resolved addresses, not only the name; and the same address has many spellings
//! (IPv4-mapped and -compatible IPv6, NAT64, 6to4), so each is unwrapped to the IPv4 address it
//! carries before it is classified.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not global, or `None` when it is.
pub fn non_global_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            // Classified as the IPv4 address it carries: ::ffff:127.0.0.1 is loopback.
            Some(v4) => v4_reason(v4),
            None => v6_reason(v6),
        },
    }
}

/// The IPv4 address carried by IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`),
/// NAT64 (`64:ff9b::/96`) and 6to4 (`2002:AABB:CCDD::/48`) addresses.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let o = v6.octets();
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match () {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "the cloud metadata address",
        _ if ip.is_loopback() => "a loopback address",
        _ if ip.is_private() => "a private address",
        _ if ip.is_link_local() => "a link-local address",
        _ if ip.is_unspecified() || a == 0 => "an unspecified (0.0.0.0/8) address",
        _ if ip.is_broadcast() => "the broadcast address",
        _ if ip.is_multicast() => "a multicast address",
        _ if ip.is_documentation() => "a documentation address",
        _ if a == 100 && (64..128).contains(&b) => "a shared (carrier-grade NAT) address",
        _ if a == 192 && b == 0 && c == 0 => "an IETF protocol assignment address",
        _ if a == 198 && (b == 18 || b == 19) => "a benchmarking address",
        _ if a >= 240 => "a reserved address",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match () {
        _ if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => {
            "the cloud metadata address"
        }
        _ if ip.is_loopback() => "a loopback address",
        _ if ip.is_unspecified() => "the unspecified address",
        _ if ip.is_multicast() => "a multicast address",
        _ if s[0] & 0xfe00 == 0xfc00 => "a unique local (private) address",
        _ if s[0] & 0xffc0 == 0xfe80 => "a link-local address",
        _ if s[0] & 0xffc0 == 0xfec0 => "a site-local address",
        _ if s[0] == 0x2001 && s[1] == 0x0db8 => "a documentation address",
        _ if s[0] == 0x0100 && s[1..4] == [0, 0, 0] => "a discard-only address",
        _ if s[0] == 0x2001 && s[1] < 0x0200 => "an IETF protocol assignment address",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> Option<&'static str> {
        non_global_reason(text.parse().unwrap())
    }

    #[test]
    fn egress_address_denies_private_and_metadata_in_every_spelling() {
        for addr in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            // IPv6 spellings of private IPv4 addresses.
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "::ffff:7f00:1",
        ] {
            assert!(reason(addr).is_some(), "{addr} passed as global");
        }
        assert_eq!(
            reason("169.254.169.254"),
            Some("the cloud metadata address")
        );
        assert_eq!(
            reason("::ffff:169.254.169.254"),
            Some("the cloud metadata address")
        );
        assert_eq!(reason("fd00:ec2::254"), Some("the cloud metadata address"));
        for addr in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
        ] {
            assert_eq!(reason(addr), None, "{addr} denied");
        }
    }
}
