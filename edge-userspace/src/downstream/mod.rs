//! Client-facing side: TLS termination and the HTTP/1.1 + HTTP/2 listeners.
//!
//! `ca` and `certs` decide which certificate a hostname gets, `tls` runs the handshake with the
//! hostname's policy, `listener` accepts connections under the limits and hands every request
//! to a [`Handler`] (the pipeline): HTTP/1.1 through the edge's own server on httparse
//! (`http1`), HTTP/2 on `h2` directly (`http2`); `watchdog` closes idle connections and drops
//! responses the client does not read, `control_frames` cuts HTTP/2 SETTINGS and PING floods,
//! `date` stamps `Date` on both.

pub mod ca;
pub mod certs;
pub mod control_frames;
mod date;
pub mod h3;
pub mod http1;
pub mod http2;
pub mod listener;
pub(crate) mod rewind;
pub mod tls;
pub mod watchdog;

use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response};

pub use ca::LocalCa;
pub use certs::{CertStore, MinTls, Tier};
pub use listener::{Limits, serve, shutdown_signal};
pub use tls::{Classified, ClassifyConnection, TlsAcceptor, TlsInfo};
pub use watchdog::Closed;

/// Boxed error type carried by streaming bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The connection a request arrived on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// `None` on the plain HTTP listener.
    pub tls: Option<TlsInfo>,
    /// `peer`'s address as a header value; see [`ConnInfo::client_ip`].
    client_ip: HeaderValue,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, local: SocketAddr, tls: Option<TlsInfo>) -> Self {
        Self {
            peer,
            local,
            tls,
            client_ip: ip_header(peer.ip()),
        }
    }

    /// The visitor's address as `cf-connecting-ip` and `x-forwarded-for` carry it (IPv4-mapped
    /// IPv6 addresses as IPv4). Made once per connection rather than formatted and allocated
    /// again for every request on it; clones share the bytes.
    pub fn client_ip(&self) -> &HeaderValue {
        &self.client_ip
    }

    /// `https` or `http`, as the client sees it (what `x-forwarded-proto` reports).
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The SNI the client sent, if any.
    pub fn sni(&self) -> Option<&str> {
        self.tls.as_ref()?.sni.as_deref()
    }

    /// The chain the connection was classified into at accept, if any.
    pub fn chain(&self) -> Option<&Arc<crate::chain::Chain>> {
        self.tls.as_ref()?.chain.as_ref()
    }
}

fn ip_header(ip: IpAddr) -> HeaderValue {
    let ip = crate::per_address::canonical(ip);
    // Formatted on the stack: the longest IPv6 text is 45 bytes.
    let mut text = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    write!(cursor, "{ip}").expect("an IP address fits in 64 bytes");
    let len = usize::try_from(cursor.position()).expect("at most 64");
    HeaderValue::from_bytes(&text[..len]).expect("an IP address is a valid header value")
}

/// Answers requests; one instance is shared by every connection of a listener.
pub trait Handler: Clone + Send + Sync + 'static {
    /// Response body; streamed frame by frame to the client.
    type Body: http_body::Body<Data = Bytes, Error = BoxError> + Send + Unpin + 'static;

    /// Answers `req`, whose body type is the front door's own (the edge's HTTP/1.1 body,
    /// [`http2::RequestBody`], HTTP/3's).
    fn handle<B>(
        &self,
        conn: Arc<ConnInfo>,
        req: Request<B>,
    ) -> impl Future<Output = Response<Self::Body>> + Send
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>;

    /// Called for every accepted connection; what it returns lives as long as the connection
    /// (e.g. a guard counting open connections).
    fn accepted(&self) -> impl Send + 'static {}

    /// Called when the edge closes a connection itself, or one ends with an error (e.g. for a
    /// metric: under attack these are too many to log one by one).
    fn closed(&self, _why: Closed) {}
}
