//! Fixtures for the proxy tests: an edge on loopback with a fixed host → origin table in place
//! of the chain resolver, the echo origin, and origins that fail on purpose.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use edge_userspace::chain::ErrorKind;
use edge_userspace::downstream::{self, CertStore, ConnInfo, Limits, LocalCa, Tier, TlsAcceptor};
use edge_userspace::pipeline::{ErrorPage, PipelineConfig, Proxy, Route, Routed, Router};
use edge_userspace::upstream::{self, ClientConfig, Origin};
use http::header::HeaderValue;
use http::{request, response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Header the test router adds in the response phase, proving the phase ran.
pub const RESPONSE_PHASE_HEADER: &str = "x-test-response-phase";

/// Routes by `Host` / `:authority` from a fixed table; unknown hosts get 1001.
pub struct TableRouter(pub HashMap<String, Route>);

impl Router for TableRouter {
    type State = String;

    fn route(&self, _conn: &ConnInfo, req: &mut request::Parts) -> Routed<String> {
        let host = req
            .uri
            .host()
            .map(str::to_owned)
            .or_else(|| {
                let host = req.headers.get(http::header::HOST)?.to_str().ok()?;
                Some(host.rsplit_once(':').map_or(host, |(h, _)| h).to_owned())
            })
            .unwrap_or_default()
            .to_ascii_lowercase();
        Routed::from(match self.0.get(&host) {
            Some(route) => Ok((route.clone(), host)),
            None => Err(ErrorPage::new(ErrorKind::NoRoute).into()),
        })
    }

    fn on_response(&self, host: String, _conn: &ConnInfo, resp: &mut response::Parts) {
        resp.headers
            .insert(RESPONSE_PHASE_HEADER, HeaderValue::try_from(host).unwrap());
    }
}

/// Adds certificates or TLS policy with the edge's CA before the edge starts.
pub type ConfigureCerts = Box<dyn FnOnce(&LocalCa, &mut CertStore) + Send>;

/// What an edge under test serves.
pub struct EdgeSetup {
    /// Hostname → origin; every hostname gets a certificate from the local CA unless `certs`
    /// already covers it.
    pub routes: Vec<(String, Origin)>,
    pub limits: Limits,
    pub client: ClientConfig,
    pub pipeline: PipelineConfig,
    /// Request body limit of every route.
    pub max_request_body: Option<u64>,
    /// Extra certificate configuration, run before the missing certificates are minted.
    pub certs: ConfigureCerts,
}

impl EdgeSetup {
    pub fn new(routes: Vec<(String, Origin)>) -> Self {
        Self {
            routes,
            limits: Limits {
                drain_timeout: Duration::from_secs(5),
                ..Limits::default()
            },
            client: ClientConfig {
                connect_timeout: Duration::from_secs(2),
                header_timeout: Duration::from_secs(20),
                idle_body_timeout: Duration::from_secs(20),
                ..ClientConfig::default()
            },
            pipeline: PipelineConfig::default(),
            max_request_body: None,
            certs: Box::new(|_, _| {}),
        }
    }
}

/// A running edge: a TLS and a plain listener on loopback.
pub struct Edge {
    pub tls_addr: SocketAddr,
    pub plain_addr: SocketAddr,
    pub ca_pem: Vec<u8>,
    pub ca_der: Vec<u8>,
    pub state_dir: tempfile::TempDir,
    /// The TLS listener's acceptor, for reloading certificates.
    pub tls: TlsAcceptor,
    shutdown: Option<oneshot::Sender<()>>,
    servers: Option<JoinHandle<Result<()>>>,
}

impl Edge {
    pub async fn start(setup: EdgeSetup) -> Result<Self> {
        let state_dir = tempfile::tempdir()?;
        let ca = LocalCa::load_or_create(state_dir.path())?;
        let mut store = CertStore::default();
        (setup.certs)(&ca, &mut store);
        for (host, _) in &setup.routes {
            store.ensure(Tier::CustomHostname, host, &ca)?;
        }
        let tls = TlsAcceptor::new(Arc::new(store))?;
        let routes = setup
            .routes
            .into_iter()
            .map(|(host, origin)| {
                let route = Route {
                    origin,
                    host_header: HeaderValue::try_from(host.as_str()).unwrap(),
                    max_request_body: setup.max_request_body,
                    admitted: None,
                };
                (host, route)
            })
            .collect();
        let proxy = Proxy::new(
            TableRouter(routes),
            upstream::Client::new(setup.client)?,
            setup.pipeline,
        );
        let tls_listener = TcpListener::bind("127.0.0.1:0").await?;
        let plain_listener = TcpListener::bind("127.0.0.1:0").await?;
        let (tls_addr, plain_addr) = (tls_listener.local_addr()?, plain_listener.local_addr()?);
        let (shutdown, stop) = oneshot::channel::<()>();
        let stop = futures_util::FutureExt::shared(async {
            let _ = stop.await;
        });
        let limits = setup.limits;
        let acceptor = tls.clone();
        let servers = tokio::spawn(async move {
            let (tls, plain) = tokio::join!(
                downstream::serve(
                    tls_listener,
                    Some(tls),
                    proxy.clone(),
                    limits.clone(),
                    stop.clone()
                ),
                downstream::serve(plain_listener, None, proxy, limits, stop),
            );
            tls.and(plain)
        });
        Ok(Self {
            tls_addr,
            plain_addr,
            ca_pem: std::fs::read(ca.cert_path())?,
            ca_der: ca.cert_der().to_vec(),
            state_dir,
            tls: acceptor,
            shutdown: Some(shutdown),
            servers: Some(servers),
        })
    }

    /// reqwest client trusting only the edge's CA and resolving `hosts` to the TLS listener.
    pub fn client(&self, hosts: &[&str], http2: bool) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&self.ca_pem).unwrap()])
            .no_proxy()
            .timeout(Duration::from_secs(30));
        for host in hosts {
            builder = builder.resolve(host, self.tls_addr);
        }
        builder = if http2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        };
        builder.build().unwrap()
    }

    /// rustls client configuration trusting only the edge's CA.
    pub fn rustls_client(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone().into()).unwrap();
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    /// Signals shutdown and waits until the listeners have drained.
    pub async fn shutdown(&mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(servers) = self.servers.take() {
            servers.await.context("edge task panicked")??;
        }
        Ok(())
    }

    /// Signals shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for the listeners after [`Edge::begin_shutdown`].
    pub async fn drained(&mut self) -> Result<()> {
        self.shutdown().await
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        if let Some(servers) = self.servers.take() {
            servers.abort();
        }
    }
}

/// The values of request header `name` as the echo origin received them.
pub fn echoed_header<'a>(echo: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    echo["headers"][name]
        .as_array()
        .map(|values| values.iter().map(|v| v.as_str().unwrap()).collect())
        .unwrap_or_default()
}

/// A plain origin on loopback (the echo origin).
pub fn plain_origin(addr: SocketAddr) -> Origin {
    Origin {
        host: addr.ip().to_string(),
        port: addr.port(),
        tls: None,
    }
}

/// Starts the echo origin on loopback.
pub async fn spawn_echo() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(edge_userspace::echo::serve(listener));
    Ok(addr)
}

/// An address nothing listens on: connecting is refused.
pub async fn refusing_origin() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(addr)
}

/// How [`spawn_bad_origin`] misbehaves after reading a request head.
#[derive(Clone, Copy, Debug)]
pub enum BadOrigin {
    /// Resets the connection (RST) before answering.
    ResetBeforeHead,
    /// Promises 1 MB, sends 1 KB, then resets.
    ResetMidBody,
    /// Never answers (the edge's header timeout fires).
    Silent,
    /// Answers `200 ok` after the delay.
    Delayed(Duration),
}

/// Starts an origin that misbehaves as `mode` says, on every connection.
pub async fn spawn_bad_origin(mode: BadOrigin) -> Result<SocketAddr> {
    Ok(spawn_counted_bad_origin(mode).await?.0)
}

/// [`spawn_bad_origin`], also counting the connections it accepted.
pub async fn spawn_counted_bad_origin(
    mode: BadOrigin,
) -> Result<(SocketAddr, Arc<std::sync::atomic::AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(misbehave(tcp, mode));
        }
    });
    Ok((addr, connections))
}

async fn misbehave(mut tcp: TcpStream, mode: BadOrigin) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    match mode {
        BadOrigin::ResetBeforeHead => reset(tcp),
        BadOrigin::ResetMidBody => {
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n")
                .await;
            let _ = tcp.write_all(&[b'x'; 1024]).await;
            let _ = tcp.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            reset(tcp);
        }
        BadOrigin::Silent => {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        BadOrigin::Delayed(delay) => {
            tokio::time::sleep(delay).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    }
}

/// Closes with SO_LINGER 0 so the peer sees a reset, not an orderly close.
fn reset(tcp: TcpStream) {
    let std = tcp.into_std().expect("a connected tokio stream converts");
    socket2::SockRef::from(&std)
        .set_linger(Some(Duration::ZERO))
        .expect("setting SO_LINGER");
    drop(std);
}

/// A TLS origin serving the echo app with `cert`, offering `alpn`; counts TCP connections.
pub async fn spawn_tls_echo(
    cert: Arc<rustls::sign::CertifiedKey>,
    alpn: &[&[u8]],
) -> Result<(SocketAddr, Arc<std::sync::atomic::AtomicUsize>)> {
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(cert)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(tcp).await {
                    edge_userspace::echo::serve_connection(stream).await;
                }
            });
        }
    });
    Ok((addr, connections))
}
