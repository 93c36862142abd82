//! The third front door: HTTP/3 over QUIC (quinn + h3) on the UDP port of the HTTPS listener.
//!
//! Requests arrive here and leave through the same [`H3Handler`] that the pipeline implements for
//! HTTP/1.1 and HTTP/2 (`Proxy::respond`): one chain resolution, one set of stages, one upstream
//! pool. What is specific to QUIC stays in this module:
//!
//! - `tls`: the TCP listener's certificates, reloads and ticket keys, TLS 1.3 and ALPN `h3`;
//! - `cid`: connection IDs in the QUIC-LB layout, and which ID a new connection got, so the XDP
//!   program can count its datagrams per chain ([`ConnectionIds`]);
//! - `server`: endpoint, limits, 0-RTT policy, graceful drain;
//! - `admission`: which handshakes start at once and which must first prove their address
//!   (stateless Retry), the handshake deadline, the budget of cancelled requests;
//! - `guard`: every frame's declared length checked before h3 buffers it;
//! - `body`: h3 streams as `http_body` bodies.

mod admission;
mod body;
pub mod cid;
mod guard;
mod server;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde::Deserialize;

pub use body::RequestBody;
pub use server::{Listener, ZERO_RTT_SAFE_METHODS};

use super::{BoxError, ConnInfo};

/// ALPN of HTTP/3.
pub const ALPN: &[u8] = b"h3";

/// Answers HTTP/3 requests; the pipeline's `Proxy` is the one implementation that serves.
pub trait H3Handler: Clone + Send + Sync + 'static {
    type Body: http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static;

    fn handle(
        &self,
        conn: Arc<ConnInfo>,
        req: Request<RequestBody>,
    ) -> impl Future<Output = Response<Self::Body>> + Send;

    /// Called for every connection admitted to a handshake; what it returns lives as long as
    /// the connection (e.g. a guard counting open connections).
    fn accepted(&self) -> impl Send + 'static {}

    /// Counts an answer the HTTP/3 server gave itself, without the pipeline (425 Too Early).
    fn answered_locally(&self, _status: StatusCode) {}
}

/// Told which connection ID a connection started with once its handshake named the host, and
/// again when the connection is gone (the XDP map of CIDs to chains implements it).
pub trait ConnectionIds: Send + Sync + 'static {
    fn named(&self, cid: &[u8], server_name: &str);
    fn closed(&self, cid: &[u8]);
}

/// `http3` in the config file. Every field has a default, so `{}` (or no section) serves HTTP/3.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Serve HTTP/3 on the UDP port of `listen.https` (and advertise it with `Alt-Svc`).
    pub enabled: bool,
    /// Accept 0-RTT early data. Off by default; when on, only safe methods run before the
    /// handshake completes (others get 425 Too Early), see ARCHITECTURE.md.
    pub zero_rtt: bool,
    /// Request streams a client may have open at once per connection.
    pub max_concurrent_streams: u32,
    /// A connection silent for this long is closed.
    pub idle_timeout_secs: u64,
    /// Time a client gets to complete the QUIC handshake (as TCP's TLS handshake timeout).
    pub handshake_timeout_secs: u64,
    /// Time a client gets to send a request's complete HEADERS frame once it opened the stream.
    pub header_timeout_secs: u64,
    /// New handshakes per second above which a client must first prove its address with a
    /// Retry round trip (stateless address validation); 0 means always.
    pub retry_above_handshakes_per_second: u32,
    /// Handshakes in progress at once above which, likewise, a client must first prove its
    /// address with a Retry: a flood of Initials below the rate threshold then costs one
    /// stateless packet each too.
    pub retry_above_handshakes_in_progress: u32,
    /// Requests a client may cancel (reset, or stop reading the response of) within 10 s on
    /// one connection; one more closes the connection with `H3_EXCESSIVE_LOAD` (rapid reset).
    pub max_cancelled_requests: u32,
    /// The QUIC-LB server id in every connection ID this edge issues.
    pub server_id: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            zero_rtt: false,
            max_concurrent_streams: 128,
            idle_timeout_secs: 30,
            handshake_timeout_secs: 10,
            header_timeout_secs: 30,
            retry_above_handshakes_per_second: 1000,
            retry_above_handshakes_in_progress: 256,
            max_cancelled_requests: 100,
            server_id: 1,
        }
    }
}

impl Settings {
    /// Rejects settings that would stop the listener from serving at all.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_concurrent_streams > 0,
            "http3: max_concurrent_streams must be at least 1"
        );
        anyhow::ensure!(
            (1..=600).contains(&self.idle_timeout_secs),
            "http3: idle_timeout_secs must be between 1 and 600"
        );
        anyhow::ensure!(
            (1..=600).contains(&self.handshake_timeout_secs),
            "http3: handshake_timeout_secs must be between 1 and 600"
        );
        anyhow::ensure!(
            (1..=600).contains(&self.header_timeout_secs),
            "http3: header_timeout_secs must be between 1 and 600"
        );
        Ok(())
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_and_bad_settings_say_which() {
        let defaults: Settings = serde_json::from_str("{}").unwrap();
        assert!(defaults.enabled && !defaults.zero_rtt);
        defaults.validate().unwrap();
        for (json, field) in [
            (r#"{"max_concurrent_streams": 0}"#, "max_concurrent_streams"),
            (r#"{"idle_timeout_secs": 0}"#, "idle_timeout_secs"),
            (r#"{"handshake_timeout_secs": 0}"#, "handshake_timeout_secs"),
            (r#"{"header_timeout_secs": 601}"#, "header_timeout_secs"),
        ] {
            let settings: Settings = serde_json::from_str(json).unwrap();
            let error = settings.validate().unwrap_err().to_string();
            assert!(error.contains(field), "{error}");
        }
        let error = serde_json::from_str::<Settings>(r#"{"zero_rt": true}"#).unwrap_err();
        assert!(error.to_string().contains("zero_rt"), "{error}");
    }

    #[test]
    fn a_config_with_bad_http3_settings_is_refused() {
        let json = crate::config::DEMO.replacen(
            "\"state_dir\"",
            "\"http3\": {\"max_concurrent_streams\": 0}, \"state_dir\"",
            1,
        );
        let error = format!("{:#}", crate::config::Config::parse(&json).unwrap_err());
        assert!(error.contains("max_concurrent_streams"), "{error}");
    }
}
