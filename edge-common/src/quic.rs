//! QUIC connection IDs and the maps that count QUIC traffic per chain.
//!
//! The edge issues connection IDs in the plaintext layout of the IETF QUIC-LB
//! draft (draft-ietf-quic-load-balancers), so that a load balancer or the XDP
//! program can read which server issued a CID without any state:
//!
//! ```text
//! octet 0          1 ..= SERVER_ID_LEN       .. CID_LEN
//! +--+------+  +-------------------------+  +------------------+
//! |CR|len-1 |  | server id (big endian)  |  | nonce (random)   |
//! +--+------+  +-------------------------+  +------------------+
//!  2b  6b
//! ```
//!
//! `CR` are the config rotation bits (`0b11` is reserved by the draft for
//! unroutable CIDs, so the edge uses 0 to 2); the low six bits self-describe
//! the length (`CID_LEN - 1`). The length is fixed so that short-header
//! packets, which do not carry it, can be parsed by the XDP program.

/// Bytes of every connection ID the edge issues.
pub const CID_LEN: usize = 11;
/// Bytes of the server id after the first octet.
pub const SERVER_ID_LEN: usize = 2;
/// Random bytes after the server id.
pub const NONCE_LEN: usize = CID_LEN - 1 - SERVER_ID_LEN;
/// Config rotation value of this edge's CIDs (the two high bits of octet 0).
pub const CONFIG_ID: u8 = 0;

/// The first octet of every CID issued under `config_id`.
pub const fn first_octet(config_id: u8) -> u8 {
    (config_id << 6) | (CID_LEN as u8 - 1)
}

/// Connection ID → [`QuicRoute`] of the chain the handshake named.
pub const QUIC_CIDS: &str = "QUIC_CIDS";
/// Per-CPU array of one [`QuicCounters`].
pub const QUIC_COUNTERS: &str = "QUIC_COUNTERS";
/// Connections counted at once; an LRU map, so a CID userspace failed to
/// remove ages out instead of filling it.
pub const QUIC_CIDS_MAX: u32 = 1 << 16;

/// Key of [`QUIC_CIDS`]: a whole connection ID, padded to 12 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct QuicCid {
    pub cid: [u8; CID_LEN],
    pub _pad: u8,
}

/// Value of [`QUIC_CIDS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuicRoute {
    pub chain_id: u32,
    /// The server id of the CID, as issued (for operators reading the map).
    pub server_id: u16,
    pub _pad: u16,
}

/// Per CPU: the QUIC datagrams the classifier saw by what their CID said.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuicCounters {
    /// Long-header packets (Initial, 0-RTT, Handshake, Retry).
    pub long_header: u64,
    /// Short-header (1-RTT) packets.
    pub short_header: u64,
    /// Packets whose destination CID is in [`QUIC_CIDS`]: counted to a chain.
    pub routed: u64,
    /// Packets with an edge-issued CID (our first octet) not in the map: the
    /// handshake has not named a host yet, or the CID was issued later.
    pub unknown_cid: u64,
    /// Packets whose destination CID is not in the edge's layout (a client's
    /// first Initial, another config rotation, garbage).
    pub foreign_cid: u64,
}

impl QuicCounters {
    /// Adds another CPU's counters.
    pub fn add(&mut self, other: &Self) {
        self.long_header += other.long_header;
        self.short_header += other.short_header;
        self.routed += other.routed;
        self.unknown_cid += other.unknown_cid;
        self.foreign_cid += other.foreign_cid;
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: #[repr(C)], integers and byte arrays only, padding spelled out.
    unsafe impl aya::Pod for QuicCid {}
    unsafe impl aya::Pod for QuicRoute {}
    unsafe impl aya::Pod for QuicCounters {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<QuicCid>(), 12);
        assert_eq!(size_of::<QuicRoute>(), 8);
        assert_eq!(size_of::<QuicCounters>(), 40);
    }

    #[test]
    fn first_octet_carries_rotation_and_length() {
        assert_eq!(first_octet(0), 10);
        assert_eq!(first_octet(2) >> 6, 2);
        assert_eq!(first_octet(2) & 0x3f, CID_LEN as u8 - 1);
    }
}
