//! Ethernet, VLAN, IPv4/IPv6 and the L4 ports: just enough to find TCP and
//! UDP to a listener port and the flow's 5-tuple.

use edge_common::maps::FlowKey;

use crate::packet::Packet;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// QinQ: an 802.1ad tag around an 802.1Q tag.
const MAX_VLAN_TAGS: usize = 2;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_DEST_OPTS: u8 = 60;
/// More than real traffic carries before TCP; the loop bound the verifier needs.
const MAX_IPV6_EXT_HEADERS: usize = 4;

/// Where the transport header starts and what it is.
pub struct Transport {
    pub proto: u8,
    pub ipv6: bool,
    /// Offset of the IP header (for the addresses).
    pub ip: usize,
    /// Offset of the TCP/UDP header.
    pub l4: usize,
    /// Offset just past the IP payload (from the IP length fields).
    pub end: usize,
}

/// Parses up to the transport header. `None` for anything that is not an
/// unfragmented IPv4/IPv6 packet (or fragment tail), which then passes.
#[inline(always)]
pub fn transport(pkt: &Packet) -> Option<Transport> {
    let mut off = 12;
    let mut ether_type = pkt.be16(off)?;
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        off += 4;
        ether_type = pkt.be16(off)?;
    }
    let ip = off + 2;
    match ether_type {
        ETH_P_IPV4 => ipv4(pkt, ip),
        ETH_P_IPV6 => ipv6(pkt, ip),
        _ => None,
    }
}

#[inline(always)]
fn ipv4(pkt: &Packet, ip: usize) -> Option<Transport> {
    let version_ihl = pkt.u8(ip)?;
    let header_len = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || header_len < 20 {
        return None;
    }
    let total_len = pkt.be16(ip + 2)? as usize;
    // A fragment (MF set or non-zero offset) has no whole transport payload.
    if pkt.be16(ip + 6)? & 0x3fff != 0 || total_len < header_len {
        return None;
    }
    Some(Transport {
        proto: pkt.u8(ip + 9)?,
        ipv6: false,
        ip,
        l4: ip + header_len,
        end: ip + total_len,
    })
}

#[inline(always)]
fn ipv6(pkt: &Packet, ip: usize) -> Option<Transport> {
    if pkt.u8(ip)? >> 4 != 6 {
        return None;
    }
    let end = ip + 40 + pkt.be16(ip + 4)? as usize;
    let mut next = pkt.u8(ip + 6)?;
    let mut l4 = ip + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if next != IPV6_HOP_BY_HOP && next != IPV6_ROUTING && next != IPV6_DEST_OPTS {
            break;
        }
        let [following, len] = pkt.bytes::<2>(l4)?;
        next = following;
        l4 += (len as usize + 1) * 8;
    }
    Some(Transport {
        proto: next,
        ipv6: true,
        ip,
        l4,
        end,
    })
}

/// The 5-tuple with the client (source) first; IPv4 as IPv4-mapped IPv6.
#[inline(always)]
pub fn flow_key(pkt: &Packet, t: &Transport, src_port: u16, dst_port: u16) -> Option<FlowKey> {
    let mut key = FlowKey {
        src_port,
        dst_port,
        proto: t.proto,
        ..FlowKey::default()
    };
    if t.ipv6 {
        key.src_addr = pkt.bytes::<16>(t.ip + 8)?;
        key.dst_addr = pkt.bytes::<16>(t.ip + 24)?;
    } else {
        let [s0, s1, s2, s3, d0, d1, d2, d3] = pkt.bytes::<8>(t.ip + 12)?;
        key.src_addr[10] = 0xff;
        key.src_addr[11] = 0xff;
        key.src_addr[12..].copy_from_slice(&[s0, s1, s2, s3]);
        key.dst_addr[10] = 0xff;
        key.dst_addr[11] = 0xff;
        key.dst_addr[12..].copy_from_slice(&[d0, d1, d2, d3]);
    }
    Some(key)
}
