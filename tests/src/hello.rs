//! Real ClientHellos from rustls, and the by-hand edits the tests need on top
//! (GREASE, padding, lying lengths). The edits work on the record bytes with
//! offsets from RFC 8446 §4.1.2; they never build a hello from scratch.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConnection};

use crate::tls::TestPki;

pub const EXT_SERVER_NAME: u16 = 0;
pub const EXT_PADDING: u16 = 21;
pub const EXT_PRE_SHARED_KEY: u16 = 41;
pub const EXT_KEY_SHARE: u16 = 51;
pub const GREASE: u16 = 0x0a0a;

/// The first flight of a fresh rustls client for `name`: one handshake record.
pub fn client_hello(config: Arc<ClientConfig>, name: &str) -> Hello {
    let server_name = ServerName::try_from(name.to_string()).expect("test host name");
    let mut client = ClientConnection::new(config, server_name).expect("rustls client");
    let mut record = Vec::new();
    client.write_tls(&mut record).expect("write ClientHello");
    Hello(record)
}

/// A resumption ClientHello: a full handshake with a real rustls server in
/// memory first, so the client holds a ticket, then the second hello.
pub fn resumption_hello(pki: &TestPki, config: Arc<ClientConfig>, name: &str) -> Hello {
    let server_name = ServerName::try_from(name.to_string()).expect("test host name");
    let mut client = ClientConnection::new(config.clone(), server_name).expect("rustls client");
    let mut server = ServerConnection::new(pki.server.clone()).expect("rustls server");
    // Bounded: a TLS 1.3 handshake plus tickets takes three round trips.
    for _ in 0..10 {
        let mut flight = Vec::new();
        client.write_tls(&mut flight).expect("client flight");
        server.read_tls(&mut &flight[..]).expect("server read");
        server.process_new_packets().expect("server handshake");
        let mut flight = Vec::new();
        server.write_tls(&mut flight).expect("server flight");
        client.read_tls(&mut &flight[..]).expect("client read");
        client.process_new_packets().expect("client handshake");
        if !client.is_handshaking() && !server.is_handshaking() && !server.wants_write() {
            break;
        }
    }
    assert!(
        !client.is_handshaking(),
        "in-memory handshake did not finish"
    );
    client_hello(config, name)
}

/// A ClientHello record, editable.
#[derive(Clone, Debug)]
pub struct Hello(pub Vec<u8>);

impl Hello {
    fn session_id_len(&self) -> usize {
        self.0[43] as usize
    }

    fn be16(&self, at: usize) -> usize {
        u16::from_be_bytes([self.0[at], self.0[at + 1]]) as usize
    }

    /// Offset of the extensions' 2-byte length field.
    fn extensions_len_at(&self) -> usize {
        let suites_at = 44 + self.session_id_len();
        let compression_at = suites_at + 2 + self.be16(suites_at);
        compression_at + 1 + self.0[compression_at] as usize
    }

    /// Every extension as (type, offset of its header in the record).
    pub fn extensions(&self) -> Vec<(u16, usize)> {
        let len_at = self.extensions_len_at();
        let end = len_at + 2 + self.be16(len_at);
        let mut at = len_at + 2;
        let mut all = Vec::new();
        while at < end {
            all.push((self.be16(at) as u16, at));
            at += 4 + self.be16(at + 2);
        }
        all
    }

    /// Offset of the header of the first extension of type `ty`.
    pub fn extension_at(&self, ty: u16) -> Option<usize> {
        self.extensions()
            .into_iter()
            .find(|(t, _)| *t == ty)
            .map(|(_, at)| at)
    }

    /// Inserts an extension before the `index`-th one (or last).
    pub fn insert_extension(&mut self, index: usize, ty: u16, body: &[u8]) {
        let extensions = self.extensions();
        let len_at = self.extensions_len_at();
        let at = match extensions.get(index) {
            Some((_, at)) => *at,
            None => len_at + 2 + self.be16(len_at),
        };
        let mut bytes = ty.to_be_bytes().to_vec();
        bytes.extend((body.len() as u16).to_be_bytes());
        bytes.extend(body);
        self.0.splice(at..at, bytes.iter().copied());
        self.grow(&[len_at], bytes.len());
    }

    /// Puts a GREASE cipher suite first, and GREASE extensions first and
    /// second to last, as Chrome does (RFC 8701).
    pub fn grease(&mut self) {
        let suites_at = 44 + self.session_id_len();
        self.0
            .splice(suites_at + 2..suites_at + 2, GREASE.to_be_bytes());
        self.grow(&[suites_at], 2);
        self.insert_extension(0, GREASE, &[]);
        let count = self.extensions().len();
        self.insert_extension(count - 1, 0x1a1a, &[0]);
    }

    /// Adds the padding extension (RFC 7685) with `len` zero bytes.
    pub fn pad(&mut self, len: usize) {
        let count = self.extensions().len();
        // Before pre_shared_key, which must stay last.
        let index = match self.extension_at(EXT_PRE_SHARED_KEY) {
            Some(_) => count - 1,
            None => count,
        };
        self.insert_extension(index, EXT_PADDING, &vec![0; len]);
    }

    /// Grows the record, the handshake message and the 16-bit length fields
    /// at `also` by `by` bytes.
    fn grow(&mut self, also: &[usize], by: usize) {
        for &at in also.iter().chain(&[3]) {
            let len = self.be16(at) + by;
            self.0[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
        }
        let len = u32::from_be_bytes([0, self.0[6], self.0[7], self.0[8]]) as usize + by;
        self.0[6..9].copy_from_slice(&(len as u32).to_be_bytes()[1..]);
    }

    /// Overwrites the 16-bit field at `at` (for lying-length cases).
    pub fn set_be16(&mut self, at: usize, value: u16) {
        self.0[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}
