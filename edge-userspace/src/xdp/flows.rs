//! What the classifier decided for a connection, looked up by its 5-tuple.
//!
//! The proxy calls [`Flows::lookup`] after its first read on an accepted
//! connection: by then the ClientHello has crossed XDP and the entry exists.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

use aya::maps::{HashMap, IterableMap, Map, MapData, MapError};
use edge_common::maps::{
    FLOW_LATER_SEGMENT, FLOW_WILDCARD, Flow, FlowKey, VERDICT_BLOCKED, VERDICT_NO_SNI,
    VERDICT_PENDING, VERDICT_ROUTED, VERDICT_UNKNOWN, VERDICT_UNKNOWN_DROPPED, VERDICT_UNPARSED,
};

const IPPROTO_TCP: u8 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Routed {
        chain_id: u32,
        queue: u16,
    },
    /// The route drops this host name (a multi-segment hello still got through).
    Blocked {
        chain_id: u32,
    },
    Unknown,
    UnknownDropped,
    NoSni,
    /// The ClientHello continues in a segment XDP has not seen yet.
    Pending,
    /// A multi-segment ClientHello whose later part could not be read.
    Unparsed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    pub verdict: Verdict,
    /// `edge_common::sni::hash` of the exact SNI (0 when there is none).
    pub sni_hash: u64,
    /// The route was found through the name's `*.` wildcard.
    pub via_wildcard: bool,
    /// The SNI was read from a later TCP segment of the ClientHello.
    pub from_later_segment: bool,
}

impl FlowInfo {
    fn from_map(flow: &Flow) -> Option<Self> {
        let verdict = match flow.verdict {
            VERDICT_ROUTED => Verdict::Routed {
                chain_id: flow.chain_id,
                queue: flow.queue,
            },
            VERDICT_BLOCKED => Verdict::Blocked {
                chain_id: flow.chain_id,
            },
            VERDICT_UNKNOWN => Verdict::Unknown,
            VERDICT_UNKNOWN_DROPPED => Verdict::UnknownDropped,
            VERDICT_NO_SNI => Verdict::NoSni,
            VERDICT_PENDING => Verdict::Pending,
            VERDICT_UNPARSED => Verdict::Unparsed,
            _ => return None,
        };
        Some(Self {
            verdict,
            sni_hash: flow.sni_hash,
            via_wildcard: flow.flags & FLOW_WILDCARD != 0,
            from_later_segment: flow.flags & FLOW_LATER_SEGMENT != 0,
        })
    }
}

pub struct Flows {
    map: HashMap<MapData, FlowKey, Flow>,
}

impl Flows {
    pub(super) fn new(map: HashMap<MapData, FlowKey, Flow>) -> Self {
        Self { map }
    }

    /// A second handle on the same kernel map, so that the accept path can
    /// read flows without waiting for whoever holds the classifier.
    pub fn try_clone(&self) -> anyhow::Result<Self> {
        let fd = self.map.map().fd().as_fd().try_clone_to_owned()?;
        Ok(Self::new(
            Map::from_map_data(MapData::from_fd(fd)?)?.try_into()?,
        ))
    }

    /// The verdict for the TCP connection from `client` to `server` (as
    /// `accept` reports them; IPv4-mapped IPv6 addresses match IPv4 flows).
    pub fn lookup(
        &self,
        client: SocketAddr,
        server: SocketAddr,
    ) -> anyhow::Result<Option<FlowInfo>> {
        match self.map.get(&flow_key(client, server), 0) {
            Ok(flow) => Ok(FlowInfo::from_map(&flow)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(anyhow::anyhow!(
                "cannot read the flow {client} -> {server}: {e}"
            )),
        }
    }
}

/// The map key for a TCP flow, in the layout `edge_common::maps::FlowKey` fixes.
pub fn flow_key(client: SocketAddr, server: SocketAddr) -> FlowKey {
    FlowKey {
        src_addr: mapped(client.ip()),
        dst_addr: mapped(server.ip()),
        src_port: client.port(),
        dst_port: server.port(),
        proto: IPPROTO_TCP,
        _pad: [0; 3],
    }
}

fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_mapped_ipv6_give_the_same_key() {
        let v4 = flow_key(
            "198.18.0.2:40000".parse().unwrap(),
            "198.18.0.1:443".parse().unwrap(),
        );
        let v6 = flow_key(
            "[::ffff:198.18.0.2]:40000".parse().unwrap(),
            "[::ffff:198.18.0.1]:443".parse().unwrap(),
        );
        assert_eq!(v4, v6);
        assert_eq!(v4.src_addr[10..], [0xff, 0xff, 198, 18, 0, 2]);
        assert_eq!((v4.src_port, v4.dst_port, v4.proto), (40000, 443, 6));
    }
}
