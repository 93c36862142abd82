//! Connection IDs in the QUIC-LB plaintext layout (see `edge_common::quic` and ARCHITECTURE.md),
//! and how the server learns which of them a new connection got.
//!
//! quinn asks its [`ConnectionIdGenerator`] for IDs without saying for which connection. The ID
//! a connection starts with is generated inside [`quinn::Incoming::accept`], synchronously on
//! the calling thread; [`capture`] arms a thread-local slot around that call, so the ID can be
//! tied to the connection (and, once the handshake named a host, to its chain). IDs issued
//! later in NEW_CONNECTION_ID frames come from the endpoint's driver task and are not
//! attributable; they share the layout and the server id, so load balancers still route them.

use std::cell::RefCell;
use std::time::Duration;

use edge_common::quic::{CID_LEN, NONCE_LEN, SERVER_ID_LEN, first_octet};
use quinn::ConnectionIdGenerator;
use quinn::crypto::rustls::HandshakeData;
use quinn_proto::{ConnectionId, InvalidCid, RandomConnectionIdGenerator};

thread_local! {
    static CAPTURED: RefCell<Option<Vec<ConnectionId>>> = const { RefCell::new(None) };
}

/// Issues `[config rotation | length][server id][nonce]` IDs.
pub struct QuicLbGenerator {
    first: u8,
    server_id: [u8; SERVER_ID_LEN],
    nonce: RandomConnectionIdGenerator,
}

impl QuicLbGenerator {
    pub fn new(config_id: u8, server_id: u16) -> Self {
        Self {
            first: first_octet(config_id),
            server_id: server_id.to_be_bytes(),
            nonce: RandomConnectionIdGenerator::new(NONCE_LEN),
        }
    }
}

impl ConnectionIdGenerator for QuicLbGenerator {
    fn generate_cid(&mut self) -> ConnectionId {
        let nonce = self.nonce.generate_cid();
        let mut cid = [0; CID_LEN];
        cid[0] = self.first;
        cid[1..=SERVER_ID_LEN].copy_from_slice(&self.server_id);
        cid[1 + SERVER_ID_LEN..].copy_from_slice(&nonce);
        let cid = ConnectionId::new(&cid);
        CAPTURED.with_borrow_mut(|slot| {
            if let Some(slot) = slot {
                slot.push(cid);
            }
        });
        cid
    }

    /// Packets for IDs of another layout are dropped before any decryption is tried.
    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        if cid.len() == CID_LEN && cid[0] == self.first && cid[1..=SERVER_ID_LEN] == self.server_id
        {
            Ok(())
        } else {
            Err(InvalidCid)
        }
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// Runs `accept` and returns the connection IDs generated on this thread meanwhile.
pub fn capture<T>(accept: impl FnOnce() -> T) -> (T, Vec<ConnectionId>) {
    CAPTURED.with_borrow_mut(|slot| *slot = Some(Vec::new()));
    let result = accept();
    let cids = CAPTURED.with_borrow_mut(Option::take).unwrap_or_default();
    (result, cids)
}

/// The SNI of a finished (or 0.5-RTT) handshake.
pub fn server_name(data: Option<Box<dyn std::any::Any>>) -> Option<String> {
    data?.downcast::<HandshakeData>().ok()?.server_name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_layout_and_are_captured_on_this_thread_only() {
        let mut generator = QuicLbGenerator::new(1, 0x0a0b);
        let (cid, captured) = capture(|| generator.generate_cid());
        assert_eq!(captured, vec![cid]);
        assert_eq!(cid.len(), CID_LEN);
        assert_eq!(cid[0] >> 6, 1, "config rotation bits");
        assert_eq!(
            usize::from(cid[0] & 0x3f),
            CID_LEN - 1,
            "length self-description"
        );
        assert_eq!(cid[1..3], [0x0a, 0x0b], "server id");
        assert!(generator.validate(&cid).is_ok());
        let other = generator.generate_cid();
        assert_ne!(cid[3..], other[3..], "nonces differ");
        let (_, none) = capture(|| ());
        assert!(none.is_empty());
        let foreign = ConnectionId::new(&[0; CID_LEN]);
        assert!(generator.validate(&foreign).is_err());
    }
}
