//! The HTTP pre-validation fetch: `GET /.well-known/cf-custom-hostname-challenge/<id>`
//! on the hostname itself, over plain HTTP as Cloudflare does, with hyper's
//! client on a connection to an address the configured resolver gave.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A challenge body is a token of a few dozen bytes; anything longer is not one.
pub const MAX_BODY: usize = 4096;

/// The challenge path for the custom hostname with id `id`.
pub fn challenge_path(id: &str) -> String {
    format!("/.well-known/cf-custom-hostname-challenge/{id}")
}

/// The body `host` serves at `path`: `Ok(Some)` on 200, `Ok(None)` on any
/// other status, `Err` with the reason when no address answered. Addresses
/// are tried in order, each within `timeout`.
pub async fn fetch(
    addresses: &[IpAddr],
    port: u16,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<Option<String>, String> {
    let mut reasons = Vec::new();
    for ip in addresses {
        let addr = SocketAddr::new(*ip, port);
        match tokio::time::timeout(timeout, fetch_from(addr, host, path)).await {
            Ok(Ok(body)) => return Ok(body),
            Ok(Err(reason)) => reasons.push(format!("{addr}: {reason}")),
            Err(_) => reasons.push(format!("{addr}: no answer within {timeout:?}")),
        }
    }
    match reasons.is_empty() {
        true => Err(format!("{host} has no address")),
        false => Err(reasons.join("; ")),
    }
}

async fn fetch_from(addr: SocketAddr, host: &str, path: &str) -> Result<Option<String>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    // Aborted once the one exchange is done, which closes the connection.
    let driver = tokio::spawn(connection);
    let result = async {
        let request = http::Request::get(path)
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "edge-hostname-verifier")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != StatusCode::OK {
            return Ok(None);
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        Ok(Some(String::from_utf8_lossy(&body).into_owned()))
    }
    .await;
    driver.abort();
    result
}
