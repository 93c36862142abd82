//! QUIC datagrams: counted per chain by their destination connection ID.
//!
//! QUIC encrypts its handshake, so the SNI cannot be read here; instead the
//! edge issues CIDs in the QUIC-LB layout (`edge_common::quic`) and userspace
//! records a connection's CID with its chain once the handshake named the
//! host. Every datagram passes: counting must never cost a connection.

use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use edge_common::quic::{CID_LEN, QUIC_CIDS_MAX, QuicCid, QuicCounters, QuicRoute};

use crate::counters;
use crate::packet::Packet;
use crate::parse::Transport;

#[map]
pub static QUIC_CIDS: LruHashMap<QuicCid, QuicRoute> =
    LruHashMap::with_max_entries(QUIC_CIDS_MAX, 0);

#[map]
pub static QUIC_COUNTERS: PerCpuArray<QuicCounters> = PerCpuArray::with_max_entries(1, 0);

const UDP_HEADER: usize = 8;
const LONG_HEADER: u8 = 0x80;
/// Long header: flags, 4 bytes of version, then the DCID length.
const LONG_DCID_LEN: usize = 5;
/// The two reserved config rotation bits: not a CID of this edge.
const CR_UNROUTABLE: u8 = 0b11;

/// Accounts one UDP datagram to a QUIC listener port.
#[inline(always)]
pub fn datagram(pkt: &Packet, t: &Transport) {
    let payload = t.l4 + UDP_HEADER;
    let Some(flags) = pkt.u8(payload) else {
        return;
    };
    let dcid_at = if flags & LONG_HEADER != 0 {
        bump(|c| c.long_header += 1);
        // A long header says how long its DCID is; ours are always CID_LEN.
        if pkt.u8(payload + LONG_DCID_LEN) != Some(CID_LEN as u8) {
            bump(|c| c.foreign_cid += 1);
            return;
        }
        payload + LONG_DCID_LEN + 1
    } else {
        bump(|c| c.short_header += 1);
        payload + 1
    };
    let Some(cid) = pkt.bytes::<CID_LEN>(dcid_at) else {
        bump(|c| c.foreign_cid += 1);
        return;
    };
    if cid[0] & 0x3f != CID_LEN as u8 - 1 || cid[0] >> 6 == CR_UNROUTABLE {
        bump(|c| c.foreign_cid += 1);
        return;
    }
    let key = QuicCid { cid, _pad: 0 };
    match QUIC_CIDS.get_ptr(&key) {
        Some(route) => {
            // SAFETY: a map value read once; userspace writes routes whole.
            let chain_id = unsafe { (*route).chain_id };
            bump(|c| c.routed += 1);
            counters::chain(chain_id, pkt.len(), false);
        }
        None => bump(|c| c.unknown_cid += 1),
    }
}

#[inline(always)]
fn bump(f: impl FnOnce(&mut QuicCounters)) {
    if let Some(counters) = QUIC_COUNTERS.get_ptr_mut(0) {
        // SAFETY: a per-CPU array slot, written only by this CPU.
        f(unsafe { &mut *counters });
    }
}
