//! Ethernet frames around a TCP or UDP payload, with the variations the XDP
//! parser must survive: VLAN tags, IPv4 options, IPv6 extension headers, TCP
//! options. Checksums stay zero: XDP never reads them.

use std::net::{IpAddr, SocketAddr};

pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const IPV6_HOP_BY_HOP: u8 = 0;
pub const IPV6_ROUTING: u8 = 43;
pub const IPV6_DEST_OPTS: u8 = 60;
const TCP: u8 = 6;
const UDP: u8 = 17;

/// A TCP segment from `client` to `server`.
#[derive(Clone, Debug)]
pub struct Tcp {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub seq: u32,
    /// TPIDs of VLAN tags, outermost first.
    pub vlan_tags: Vec<u16>,
    /// IPv4 options (a multiple of 4 bytes).
    pub ipv4_options: Vec<u8>,
    /// IPv6 extension headers (by next-header value), 8 bytes each.
    pub ipv6_extensions: Vec<u8>,
    /// TCP options (a multiple of 4 bytes).
    pub tcp_options: Vec<u8>,
}

impl Tcp {
    pub fn new(client: &str, server: &str) -> Self {
        Self {
            client: client.parse().expect("client address"),
            server: server.parse().expect("server address"),
            seq: 0x1000_0000,
            vlan_tags: Vec::new(),
            ipv4_options: Vec::new(),
            ipv6_extensions: Vec::new(),
            tcp_options: Vec::new(),
        }
    }

    pub fn frame(&self, payload: &[u8]) -> Vec<u8> {
        assert_eq!(self.tcp_options.len() % 4, 0, "TCP options must be padded");
        let mut tcp = Vec::new();
        tcp.extend(self.client.port().to_be_bytes());
        tcp.extend(self.server.port().to_be_bytes());
        tcp.extend(self.seq.to_be_bytes());
        tcp.extend(0u32.to_be_bytes()); // ack
        tcp.push((((20 + self.tcp_options.len()) / 4) as u8) << 4);
        tcp.push(0x18); // PSH, ACK
        tcp.extend(64240u16.to_be_bytes());
        tcp.extend([0; 4]); // checksum, urgent
        tcp.extend(&self.tcp_options);
        tcp.extend(payload);
        ip_frame(
            &self.vlan_tags,
            self.client.ip(),
            self.server.ip(),
            TCP,
            &self.ipv4_options,
            &self.ipv6_extensions,
            &tcp,
        )
    }
}

/// A UDP datagram (QUIC-shaped or not: XDP only counts it).
pub fn udp(client: &str, server: &str, payload: &[u8]) -> Vec<u8> {
    let (client, server): (SocketAddr, SocketAddr) =
        (client.parse().unwrap(), server.parse().unwrap());
    let mut udp = Vec::new();
    udp.extend(client.port().to_be_bytes());
    udp.extend(server.port().to_be_bytes());
    udp.extend(((8 + payload.len()) as u16).to_be_bytes());
    udp.extend([0; 2]);
    udp.extend(payload);
    ip_frame(&[], client.ip(), server.ip(), UDP, &[], &[], &udp)
}

/// An ARP request: the benchmark's and the tests' non-IP frame.
pub fn arp() -> Vec<u8> {
    let mut frame = ethernet(&[], 0x0806);
    frame.extend([0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend([0x02, 0, 0, 0, 0, 2, 198, 18, 0, 2]);
    frame.extend([0; 6]);
    frame.extend([198, 18, 0, 1]);
    frame
}

fn ethernet(vlan_tags: &[u16], ether_type: u16) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for (i, tpid) in vlan_tags.iter().enumerate() {
        frame.extend(tpid.to_be_bytes());
        frame.extend((100 + i as u16).to_be_bytes()); // VLAN id
    }
    frame.extend(ether_type.to_be_bytes());
    frame
}

fn ip_frame(
    vlan_tags: &[u16],
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    ipv4_options: &[u8],
    ipv6_extensions: &[u8],
    l4: &[u8],
) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            assert_eq!(ipv4_options.len() % 4, 0, "IPv4 options must be padded");
            let header_len = 20 + ipv4_options.len();
            let mut frame = ethernet(vlan_tags, 0x0800);
            frame.push(0x40 | (header_len / 4) as u8);
            frame.push(0);
            frame.extend(((header_len + l4.len()) as u16).to_be_bytes());
            frame.extend([0, 0, 0x40, 0]); // id, DF
            frame.extend([64, proto, 0, 0]);
            frame.extend(src.octets());
            frame.extend(dst.octets());
            frame.extend(ipv4_options);
            frame.extend(l4);
            frame
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let mut frame = ethernet(vlan_tags, 0x86dd);
            frame.extend([0x60, 0, 0, 0]);
            frame.extend(((ipv6_extensions.len() * 8 + l4.len()) as u16).to_be_bytes());
            frame.push(*ipv6_extensions.first().unwrap_or(&proto));
            frame.push(64);
            frame.extend(src.octets());
            frame.extend(dst.octets());
            for (i, _) in ipv6_extensions.iter().enumerate() {
                let next = *ipv6_extensions.get(i + 1).unwrap_or(&proto);
                // 8 bytes: next header, length 0 (= 8 bytes), PadN option.
                frame.extend([next, 0, 1, 4, 0, 0, 0, 0]);
            }
            frame.extend(l4);
            frame
        }
        _ => panic!("mixed address families"),
    }
}
