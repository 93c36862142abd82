//! `proxy_floor`: the edge's crates with none of the edge, as a row of `cargo xtask bench-proxy
//! --floor`.
//!
//! Why it exists: the proxy bench compares the edge with h2o and haproxy, and the gap is the sum
//! of what the edge's own logic costs and what its stack (tokio, hyper, h2, rustls, mimalloc)
//! costs next to hand-tuned C. This binary measures the second part alone, so that the bench can
//! say how far the edge sits above the floor its crates set (edge / floor) and how far that floor
//! sits above the peers (floor / h2o).
//!
//! It is the edge's stack and nothing else: a tokio current-thread runtime (`edge serve
//! --workers 1`), mimalloc with the same arena setting, rustls with the edge's server settings
//! (aws-lc-rs, X25519MLKEM768 first, TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, tickets and a
//! session cache), hyper-util's HTTP/1.1 + HTTP/2 server builder with the edge's HTTP/2 settings,
//! and hyper's HTTP/1.1 client on a keep-alive pool. Like the peers' configurations it refuses
//! other hosts with 421, adds `cf-connecting-o2o: 1` to the request and one header to the
//! response; there are no chains, rules, header scrubbing, limits or timeouts.
//!
//! Usage: `proxy_floor <listen addr> <origin addr> <host> <cert.pem> <key.pem>`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use http::header::HOST;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The `edge` binary's mimalloc default (see its `main.rs`): arenas committed on demand.
#[used]
#[unsafe(link_section = ".init_array")]
static MIMALLOC_DEFAULTS: extern "C" fn() = {
    extern "C" fn set_defaults() {
        const ARENA_EAGER_COMMIT: std::ffi::c_int = 4;
        unsafe extern "C" {
            fn mi_option_set_default(option: std::ffi::c_int, value: std::ffi::c_long);
        }
        // SAFETY: only writes the option's default while it is still unread.
        unsafe { mi_option_set_default(ARENA_EAGER_COMMIT, 0) };
    }
    set_defaults
};

type Body = UnsyncBoxBody<bytes::Bytes, hyper::Error>;

/// Idle HTTP/1.1 origin connections, most recently used last.
#[derive(Clone)]
struct Pool {
    origin: SocketAddr,
    idle: Arc<Mutex<Vec<SendRequest<Incoming>>>>,
}

impl Pool {
    async fn send(&self, req: Request<Incoming>) -> Result<Response<Incoming>> {
        let mut sender = loop {
            let Some(mut sender) = self.idle.lock().expect("pool lock").pop() else {
                break self.connect().await?;
            };
            if sender.ready().await.is_ok() {
                break sender;
            }
        };
        let response = sender.send_request(req).await?;
        // Back with the head: hyper's `ready()` holds the next request on this connection
        // until the origin has sent this response's body.
        self.idle.lock().expect("pool lock").push(sender);
        Ok(response)
    }

    async fn connect(&self) -> Result<SendRequest<Incoming>> {
        let tcp = TcpStream::connect(self.origin).await?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }
}

async fn proxy(pool: Pool, host: Arc<str>, mut req: Request<Incoming>) -> Response<Body> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.host().to_owned())
        .or_else(|| {
            let value = req.headers().get(HOST)?.to_str().ok()?;
            Some(value.split(':').next().unwrap_or_default().to_owned())
        });
    if authority.as_deref() != Some(&*host) {
        return status(StatusCode::MISDIRECTED_REQUEST);
    }
    // HTTP/1.1 to the origin: origin-form target, the virtual host in `Host`.
    let host_value = req.uri().authority().map(|a| a.as_str().parse());
    *req.uri_mut() = Uri::from(
        req.uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    *req.version_mut() = http::Version::HTTP_11;
    let headers = req.headers_mut();
    if let Some(Ok(value)) = host_value {
        headers.insert(HOST, value);
    }
    headers.insert("cf-connecting-o2o", HeaderValue::from_static("1"));
    match pool.send(req).await {
        Ok(mut response) => {
            response
                .headers_mut()
                .insert("x-served-by", HeaderValue::from_static("floor"));
            response.map(BodyExt::boxed_unsync)
        }
        Err(_) => status(StatusCode::BAD_GATEWAY),
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = code;
    response
}

fn tls_config(cert: &str, key: &str) -> Result<Arc<rustls::ServerConfig>> {
    let mut provider = aws_lc_rs::default_provider();
    provider
        .kx_groups
        .retain(|group| group.name() != kx_group::X25519MLKEM768.name());
    provider.kx_groups.insert(0, kx_group::X25519MLKEM768);
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {cert}"))?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {key}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = aws_lc_rs::Ticketer::new()?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(config))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, origin, host, cert, key] = args.as_slice() else {
        anyhow::bail!("usage: proxy_floor <listen addr> <origin addr> <host> <cert.pem> <key.pem>");
    };
    let tls = tokio_rustls::TlsAcceptor::from(tls_config(cert, key)?);
    let pool = Pool {
        origin: origin.parse().context("origin address")?,
        idle: Arc::default(),
    };
    let host: Arc<str> = host.as_str().into();
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1().timer(TokioTimer::new()).keep_alive(true);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .keep_alive_interval(Duration::from_secs(20));
    let http = Arc::new(http);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(listen.as_str()).await?;
        loop {
            let (tcp, _) = listener.accept().await?;
            let (tls, pool, host, http) = (tls.clone(), pool.clone(), host.clone(), http.clone());
            tokio::spawn(async move {
                tcp.set_nodelay(true).ok();
                let Ok(stream) = tls.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req| {
                    let (pool, host) = (pool.clone(), host.clone());
                    async move { Ok::<_, Infallible>(proxy(pool, host, req).await) }
                });
                let _ = http
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
