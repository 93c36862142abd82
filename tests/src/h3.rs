//! An HTTP/3 client on quinn + h3 for the tests: trusts only the edge's CA, connects with a
//! chosen SNI to a chosen address, streams request bodies and hashes response bodies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::{Buf, Bytes};
use http::{HeaderMap, Request, StatusCode};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

pub type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;
pub type RequestStream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// Every step of a test client is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A QUIC client config trusting only `ca_pem`, ALPN h3. Endpoints using it resume sessions.
pub fn client_config(ca_pem: &[u8]) -> Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert?)?;
    }
    let mut tls =
        rustls::ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    // Offered only when the server's ticket allows it.
    tls.enable_early_data = true;
    Ok(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(tls)?,
    )))
}

/// One HTTP/3 connection to the edge.
pub struct H3Client {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub send: SendRequest,
    driver: JoinHandle<()>,
}

/// What came back: head, and the body's length and SHA-256 (the body itself when small).
#[derive(Debug)]
pub struct H3Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub length: u64,
    pub sha256: String,
}

impl H3Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Bodies up to this size are kept in [`H3Response::body`].
const KEEP: usize = 1 << 20;

impl H3Client {
    /// Connects to `addr` presenting `sni`.
    pub async fn connect(addr: SocketAddr, sni: &str, ca_pem: &[u8]) -> Result<H3Client> {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(client_config(ca_pem)?);
        let conn = tokio::time::timeout(TIMEOUT, endpoint.connect(addr, sni)?)
            .await
            .context("QUIC handshake timed out")??;
        Self::over(endpoint, conn).await
    }

    /// Connects from `endpoint` (which keeps the session tickets of earlier connections),
    /// sending requests in 0-RTT early data when the server's ticket allows it: the
    /// [`quinn::ZeroRttAccepted`] is `Some` then.
    pub async fn resume(
        endpoint: quinn::Endpoint,
        addr: SocketAddr,
        sni: &str,
    ) -> Result<(H3Client, Option<quinn::ZeroRttAccepted>)> {
        match endpoint.connect(addr, sni)?.into_0rtt() {
            Ok((conn, accepted)) => Ok((Self::over(endpoint, conn).await?, Some(accepted))),
            Err(connecting) => {
                let conn = tokio::time::timeout(TIMEOUT, connecting)
                    .await
                    .context("QUIC handshake timed out")??;
                Ok((Self::over(endpoint, conn).await?, None))
            }
        }
    }

    /// HTTP/3 over an established (or 0-RTT) connection.
    pub async fn over(endpoint: quinn::Endpoint, conn: quinn::Connection) -> Result<H3Client> {
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone())).await?;
        let driver = tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(H3Client {
            endpoint,
            conn,
            send,
            driver,
        })
    }

    /// Sends `req` with `body` (chunks streamed in order) and reads the whole response.
    pub async fn send(
        &mut self,
        req: Request<()>,
        body: impl IntoIterator<Item = Bytes>,
    ) -> Result<H3Response> {
        let mut stream = self.start(req, body).await?;
        read_response(&mut stream).await
    }

    /// A GET of `path` on `host`.
    pub async fn get(&mut self, host: &str, path: &str) -> Result<H3Response> {
        let req = Request::get(format!("https://{host}{path}")).body(())?;
        self.send(req, []).await
    }

    /// Sends the head and `body`, finishes the request, returns the stream for the response.
    pub async fn start(
        &mut self,
        req: Request<()>,
        body: impl IntoIterator<Item = Bytes>,
    ) -> Result<RequestStream> {
        let mut stream = tokio::time::timeout(TIMEOUT, self.send.send_request(req))
            .await
            .context("sending the request head timed out")??;
        for chunk in body {
            tokio::time::timeout(TIMEOUT, stream.send_data(chunk))
                .await
                .context("sending the request body timed out")??;
        }
        tokio::time::timeout(TIMEOUT, stream.finish())
            .await
            .context("finishing the request timed out")??;
        Ok(stream)
    }

    /// Moves the client to a new local UDP port: to the edge, the client's address changed.
    pub fn rebind(&self) -> Result<SocketAddr> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let addr = socket.local_addr()?;
        self.endpoint.rebind(socket)?;
        Ok(addr)
    }
}

impl Drop for H3Client {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Reads the response head and streams the body through SHA-256.
pub async fn read_response(stream: &mut RequestStream) -> Result<H3Response> {
    let head = tokio::time::timeout(TIMEOUT, stream.recv_response())
        .await
        .context("response head timed out")??;
    let (mut body, mut length, mut hash) = (Vec::new(), 0u64, Sha256::new());
    while let Some(mut chunk) = tokio::time::timeout(TIMEOUT, stream.recv_data())
        .await
        .context("response body timed out")??
    {
        let chunk = chunk.copy_to_bytes(chunk.remaining());
        length += chunk.len() as u64;
        hash.update(&chunk);
        if body.len() < KEEP {
            body.extend_from_slice(&chunk);
        }
    }
    Ok(H3Response {
        status: head.status(),
        headers: head.headers().clone(),
        body,
        length,
        sha256: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    })
}
