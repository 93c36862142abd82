//! Origin side: pooled HTTP/1.1 and HTTP/2 connections, TLS to origins, timeouts and the
//! mapping of origin failures onto 502 / 504.
//!
//! One pool exists per [`Origin`] (host, port, TLS, SNI, verification): the request carries
//! the `Host` the origin should see (so HTTP/2 origins get it as `:authority`) while the
//! connection goes to the origin's own address. A request is sent again only when it is
//! idempotent and provably never reached the origin: hyper handed it back unsent (a pooled
//! connection that turned out closed) or the connection was refused or reset before any byte
//! of it was written.

mod connector;
mod http1;
mod idle;
mod lease;
mod pool;
mod progress;

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, UPGRADE};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use rustls::RootCertStore;
use rustls::pki_types::ServerName;

use crate::downstream::BoxError;
use connector::{AnyOriginCert, Dialer, TlsParams};
use http_body_util::BodyExt;
pub use idle::{BodyIdleTimeout, IdleTimeout};
pub use lease::Leased;
use pool::{Conn, OriginPool, Pools};
use progress::{Progress, Tracked};

/// Body type sent to origins.
pub type RequestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
/// Body type received from origins: the raw stream, failing after the idle-body timeout and
/// holding the origin's in-flight slot (and its HTTP/1.1 connection, until the body ends).
pub type ResponseBody = Leased<IdleTimeout<Incoming>>;

/// Sends after the first, for requests that never reached the origin.
const MAX_RETRIES: usize = 2;

/// Addresses this edge knows itself (its zones' A/AAAA records), asked before the system
/// resolver for origin names.
pub trait LocalNames: Send + Sync + 'static {
    /// `None` (or nothing) when the name is not one of this edge's records.
    fn lookup(&self, name: &str) -> Option<Vec<IpAddr>>;
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Name or IP address to connect to.
    pub host: String,
    pub port: u16,
    /// `None`: plain HTTP (SSL mode `off` / `flexible`).
    pub tls: Option<OriginTls>,
}

/// TLS towards the origin.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OriginTls {
    /// SNI sent, and the name checked in the origin's certificate when `verify` is on.
    pub sni: String,
    /// `true` for SSL mode `strict`, `false` for `full`.
    pub verify: bool,
}

/// Pool sizes and timeouts: the config file's `origin` section (every field optional,
/// durations in milliseconds).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    #[serde(
        rename = "connect_timeout_ms",
        deserialize_with = "crate::duration_ms::deserialize"
    )]
    pub connect_timeout: Duration,
    /// Longest wait for the response head after the request body last moved (so: after it
    /// was fully sent, or since the origin stopped reading it). Includes connecting.
    #[serde(
        rename = "header_timeout_ms",
        deserialize_with = "crate::duration_ms::deserialize"
    )]
    pub header_timeout: Duration,
    /// Longest silence inside a response body.
    #[serde(
        rename = "idle_body_timeout_ms",
        deserialize_with = "crate::duration_ms::deserialize"
    )]
    pub idle_body_timeout: Duration,
    /// Idle pooled connections are closed after this.
    #[serde(
        rename = "pool_idle_timeout_ms",
        deserialize_with = "crate::duration_ms::deserialize"
    )]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per origin. As many as may be in flight: with fewer, every
    /// burst above the limit closes its extra connections and the next reopens them
    /// (HTTP/1.1 origins under many multiplexed client streams churned a connection per
    /// request or so).
    pub pool_max_idle_per_origin: usize,
    /// Requests in flight per origin (head or body still moving). Bounds the connections and
    /// descriptors a hanging origin can tie up; further requests wait within the header
    /// timeout, then get 504. For an HTTP/1.1 origin it is the cap on its connections (each
    /// carries one request at a time), and each costs about 40 KiB of memory here (hyper's
    /// buffers and connection task); an HTTP/2 origin gets one connection whose own stream
    /// limit (usually 100 to 256) binds first.
    pub max_in_flight_per_origin: usize,
    /// Requests one client address may have in flight to one origin; further ones wait for
    /// one of that address's to end, within the header timeout, then get 429. Without it,
    /// three HTTP/2 connections that never read took all of an origin's slots.
    pub max_in_flight_per_client: usize,
    /// Trust anchors for SSL mode `strict`.
    #[serde(skip)]
    pub roots: Arc<RootCertStore>,
    /// Origins with a pool at a time (see [`pool::Pools`]): a client can vary the origin
    /// (a TLS origin's SNI under a wildcard hostname), so the pools are bounded.
    pub max_origin_pools: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            header_timeout: Duration::from_secs(100),
            idle_body_timeout: Duration::from_secs(100),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_origin: 1024,
            // 640 requests in flight to one HTTP/1.1 origin (the proxy bench) held 640
            // connections and 52 MiB; with 256 of them, 44 MiB at the same CPU and p99.
            max_in_flight_per_origin: 256,
            max_in_flight_per_client: 64,
            roots: Arc::new(RootCertStore::from_iter(
                webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
            )),
            max_origin_pools: 4096,
        }
    }
}

impl ClientConfig {
    /// Refuses settings that would make every request time out or wait forever.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_in_flight_per_origin > 0,
            "origin: max_in_flight_per_origin must be at least 1"
        );
        anyhow::ensure!(
            self.max_in_flight_per_client > 0,
            "origin: max_in_flight_per_client must be at least 1"
        );
        anyhow::ensure!(
            self.max_origin_pools > 0,
            "origin: max_origin_pools must be at least 1"
        );
        for (name, value) in [
            ("connect_timeout_ms", self.connect_timeout),
            ("header_timeout_ms", self.header_timeout),
            ("idle_body_timeout_ms", self.idle_body_timeout),
        ] {
            anyhow::ensure!(!value.is_zero(), "origin: {name} must be longer than zero");
        }
        Ok(())
    }
}

/// Why an origin request failed; decides between 502 and 504.
#[derive(Debug)]
pub enum UpstreamError {
    /// Connection refused, reset, TLS failure, malformed response: the origin is broken.
    Failed(BoxError),
    /// The origin did not connect or answer in time.
    Timeout(&'static str),
    /// The origin's address or SNI is unusable.
    BadOrigin(String),
    /// The client had [`ClientConfig::max_in_flight_per_client`] requests in flight to this
    /// origin for the whole header timeout: the client's doing, not the origin's.
    ClientCap,
}

impl UpstreamError {
    /// The status the client gets (Cloudflare uses the same code as error number).
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::Failed(_) | UpstreamError::BadOrigin(_) => StatusCode::BAD_GATEWAY,
            UpstreamError::ClientCap => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl UpstreamError {
    /// `true` when an error of type `E` (e.g. the request body's own error) caused this one.
    pub fn caused_by<E: std::error::Error + 'static>(&self) -> bool {
        let UpstreamError::Failed(error) = self else {
            return false;
        };
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
        while let Some(cause) = source {
            if cause.is::<E>() {
                return true;
            }
            source = cause.source();
        }
        false
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Failed(error) => {
                write!(f, "origin failed: {error}")?;
                let mut source = error.source();
                while let Some(cause) = source {
                    write!(f, ": {cause}")?;
                    source = cause.source();
                }
                Ok(())
            }
            UpstreamError::Timeout(what) => write!(f, "origin timed out: {what}"),
            UpstreamError::BadOrigin(why) => write!(f, "unusable origin: {why}"),
            UpstreamError::ClientCap => {
                f.write_str("the client has too many requests in flight to the origin")
            }
        }
    }
}

impl std::error::Error for UpstreamError {}

/// Origin client: one pool per [`Origin`], created on first use; clones share the pools.
#[derive(Clone)]
pub struct Client {
    config: Arc<ClientConfig>,
    strict: tokio_rustls::TlsConnector,
    full: tokio_rustls::TlsConnector,
    names: Option<Arc<dyn LocalNames>>,
    pools: Arc<Pools>,
}

impl Client {
    /// Fails on settings that would make every request time out or wait forever.
    pub fn new(config: ClientConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = |verifier: Option<Arc<AnyOriginCert>>| {
            let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("aws-lc-rs supports the default versions");
            let mut config = match verifier {
                None => builder
                    .with_root_certificates(config.roots.clone())
                    .with_no_client_auth(),
                Some(verifier) => builder
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth(),
            };
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            tokio_rustls::TlsConnector::from(Arc::new(config))
        };
        Ok(Self {
            strict: tls(None),
            full: tls(Some(Arc::new(AnyOriginCert(provider.clone())))),
            pools: Pools::new(config.max_origin_pools),
            config: Arc::new(config),
            names: None,
        })
    }

    /// Origins with a pool now (at most `max_origin_pools`).
    pub fn origin_pools(&self) -> usize {
        self.pools.len()
    }

    /// Resolves origin names through `names` first; set before the first request.
    pub fn with_local_names(mut self, names: Arc<dyn LocalNames>) -> Self {
        self.names = Some(names);
        self
    }

    /// Sends `req` (whose `Host` header names the virtual host) to `origin` for the client at
    /// `client`.
    ///
    /// Returns when the response head has arrived; the body then streams with the idle-body
    /// timeout. Failures of one origin only fail the requests sent to it.
    pub async fn send(
        &self,
        origin: &Origin,
        client: IpAddr,
        req: Request<RequestBody>,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let pool = self.pool(origin)?;
        let clients = pool.clients.clone();
        let timeout = self.config.header_timeout;
        // Only a request that asked for a protocol switch may get one.
        let asked_upgrade = req.headers().contains_key(UPGRADE);
        // Waiting for a slot counts against the header timeout: the client waits either way.
        // The client's own slot first, so that requests over its cap wait without holding
        // one of the origin's.
        let mut progress = Progress::new();
        let client = clients
            .admit_by(client, progress.deadline(timeout))
            .await
            .ok_or(UpstreamError::ClientCap)?;
        let permit = tokio::time::timeout_at(
            progress.deadline(timeout),
            pool.slots.clone().acquire_owned(),
        )
        .await
        .map_err(|_| UpstreamError::Timeout("too many requests in flight to the origin"))?
        .expect("origin semaphores are never closed");
        // An empty body never moves: its deadline stays a header timeout after the start.
        let req = req.map(|body| {
            if http_body::Body::is_end_stream(&body) {
                body
            } else {
                Tracked::new(body, progress.track()).boxed_unsync()
            }
        });
        let (response, connection) = {
            // Boxed: the request's future moves whole (into its task, and once more when the
            // task ends), and sending is a third of its size.
            let mut response = Box::pin(send_retrying(&pool, origin, req));
            loop {
                tokio::select! {
                    response = &mut response => break response?,
                    () = tokio::time::sleep_until(progress.deadline(timeout)) => {
                        if progress.deadline(timeout) <= tokio::time::Instant::now() {
                            return Err(UpstreamError::Timeout("no response head in time"));
                        }
                    }
                }
            }
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS && !asked_upgrade {
            return Err(UpstreamError::Failed(
                "the origin switched protocols without being asked".into(),
            ));
        }
        let idle = self.config.idle_body_timeout;
        let connection = connection.map(|sender| (pool, sender));
        Ok(response
            .map(|body| Leased::new(IdleTimeout::new(body, idle), (permit, client), connection)))
    }

    fn pool(&self, origin: &Origin) -> Result<Arc<OriginPool>, UpstreamError> {
        self.pools.get(origin, || {
            let tls = match &origin.tls {
                None => None,
                Some(tls) => Some(TlsParams {
                    connector: if tls.verify {
                        self.strict.clone()
                    } else {
                        self.full.clone()
                    },
                    sni: ServerName::try_from(tls.sni.clone()).map_err(|_| {
                        UpstreamError::BadOrigin(format!("invalid SNI {:?}", tls.sni))
                    })?,
                }),
            };
            let dialer = Dialer {
                host: origin.host.clone(),
                port: origin.port,
                tls,
                connect_timeout: self.config.connect_timeout,
                names: self.names.clone(),
            };
            Ok(OriginPool::new(
                dialer,
                self.config.max_in_flight_per_origin,
                self.config.max_in_flight_per_client,
                self.config.pool_max_idle_per_origin,
                self.config.pool_idle_timeout,
            ))
        })
    }
}

type Sent = (Response<Incoming>, Option<http1::Http1>);

/// Sends `req` on a pooled or new connection; sends it again, up to [`MAX_RETRIES`] times,
/// only when it is idempotent and never reached the origin, or when it has no body and the
/// origin closed the pooled connection it was written to before answering (origins close idle
/// keep-alive connections on their own time, which may cross a request on its way): then on a
/// new connection. An HTTP/1.1 connection comes back with the response, to drive while the
/// body is read and return to the pool when it ends.
async fn send_retrying(
    pool: &OriginPool,
    origin: &Origin,
    mut req: Request<RequestBody>,
) -> Result<Sent, UpstreamError> {
    let idempotent = req.method().is_idempotent();
    let mut retries = 0;
    let mut fresh = false;
    loop {
        let retry = idempotent && retries < MAX_RETRIES;
        retries += 1;
        let conn = if fresh {
            pool.connect().await
        } else {
            pool.checkout().await
        };
        let conn = match conn {
            Ok(conn) => conn,
            Err(error) if retry && never_connected(&error) => continue,
            Err(error) => return Err(classify(Box::new(error))),
        };
        let unsent = match conn {
            Conn::Http1(mut conn) => {
                // Origin-form: the authority travels in `Host`.
                let path = req.uri().path_and_query().cloned();
                *req.uri_mut() = path.map_or_else(|| Uri::from_static("/"), Uri::from);
                let again = (retry && conn.reused() && http_body::Body::is_end_stream(req.body()))
                    .then(|| same_request(&req));
                match conn.send(req).await {
                    Ok(response) => return Ok((response, Some(conn))),
                    Err(mut error) => match (error.take_message(), again) {
                        (Some(unsent), _) if retry => unsent,
                        (_, Some(again)) if closed_unanswered(error.error()) => {
                            fresh = true;
                            again
                        }
                        _ => return Err(classify(Box::new((*error).into_error()))),
                    },
                }
            }
            Conn::Http2(mut sender) => {
                let host = req.headers().get(HOST).and_then(|h| h.to_str().ok());
                *req.uri_mut() = origin_uri(origin, host, req.uri())?;
                match sender.try_send_request(req).await {
                    Ok(response) => return Ok((response, None)),
                    Err(mut error) => match error.take_message() {
                        Some(unsent) if retry => unsent,
                        _ => return Err(classify(Box::new(error.into_error()))),
                    },
                }
            }
        };
        tracing::debug!(origin = %origin.host, port = origin.port, "request never reached the origin, sending it again");
        req = unsent;
    }
}

/// A bodiless request's head again, for a second send.
fn same_request(req: &Request<RequestBody>) -> Request<RequestBody> {
    let mut again = Request::new(
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *again.method_mut() = req.method().clone();
    *again.uri_mut() = req.uri().clone();
    *again.version_mut() = req.version();
    *again.headers_mut() = req.headers().clone();
    again
}

/// The origin closed (or reset) the connection before any byte of a response: what a
/// keep-alive connection closed by the origin while the request was on its way looks like.
fn closed_unanswered(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            );
        }
        source = cause.source();
    }
    false
}

/// Refused or reset while connecting: the request was not written yet.
fn never_connected(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// `scheme://authority/path?query`, the authority being `host` (the virtual host) when given,
/// else the origin's own address.
fn origin_uri(origin: &Origin, host: Option<&str>, uri: &Uri) -> Result<Uri, UpstreamError> {
    let scheme = if origin.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = match host {
        Some(host) => host.to_owned(),
        None if origin.host.contains(':') => format!("[{}]:{}", origin.host, origin.port),
        None => format!("{}:{}", origin.host, origin.port),
    };
    format!("{scheme}://{authority}{path}")
        .parse()
        .map_err(|error| UpstreamError::BadOrigin(format!("{authority}: {error}")))
}

/// Timeouts anywhere in the cause chain (TCP connect, origin TLS handshake) are 504s; every
/// other failure is the origin misbehaving: 502.
fn classify(error: BoxError) -> UpstreamError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return UpstreamError::Timeout("connecting to the origin");
        }
        source = cause.source();
    }
    UpstreamError::Failed(error)
}
