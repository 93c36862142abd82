//! `edge serve`: builds every part from the config and runs the listeners
//! until SIGTERM/SIGINT (drain) while SIGHUP reloads the config in place.

pub mod demo;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::control::{self, Control};
use crate::downstream::{self, LocalCa, h3};
use crate::metrics::AdmissionCollector;
use crate::metrics::Metrics;
use crate::pipeline::{PipelineConfig, Proxy};
use crate::routing::{ChainRouter, OwnRecords};
use crate::upstream;
use crate::xdp::{XdpCollector, XdpRuntime};

/// Where the config comes from; a file is read again on SIGHUP.
pub enum Source {
    File(PathBuf),
    Inline(Box<Config>),
}

impl Source {
    fn load(&self) -> Result<Config> {
        match self {
            Source::File(path) => Config::load(path),
            Source::Inline(config) => Ok((**config).clone()),
        }
    }
}

/// The addresses actually bound (ports may have been 0).
#[derive(Debug, Clone)]
pub struct Bound {
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    pub echo: Option<SocketAddr>,
    /// HTTP/3 (UDP, same address as `https`), unless switched off.
    pub h3: Option<SocketAddr>,
    pub ca_pem: PathBuf,
    /// The edge's metrics, for the control socket's `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The control socket (`edge ctl --socket`).
    pub control: PathBuf,
    /// The XDP classifier's runtime (attached or not), for the control API.
    pub xdp: Arc<XdpRuntime>,
}

/// Serves until `shutdown` resolves (the binary passes SIGTERM/SIGINT), then
/// drains; `ready` is told the bound addresses once every listener accepts.
pub async fn run(
    source: Source,
    ready: impl FnOnce(&Bound),
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let config = source.load()?;
    std::fs::create_dir_all(&config.state_dir).with_context(|| {
        format!(
            "creating the state directory {}",
            config.state_dir.display()
        )
    })?;
    let ca = LocalCa::load_or_create(&config.state_dir)?;

    let (https, quic) = bind_https(&config).await?;
    let http = match config.listen.http {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?,
        ),
        None => None,
    };
    let echo = match config.echo_origin {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the echo origin {addr}"))?;
            let bound = listener.local_addr()?;
            tokio::spawn(crate::echo::serve(listener));
            Some(bound)
        }
        None => None,
    };
    let mut listeners = vec![https.local_addr()?];
    listeners.extend(http.as_ref().map(|l| l.local_addr()).transpose()?);

    let ca_pem = ca.cert_path().to_owned();
    let control = Control::start(&config, ca)?;
    let control_socket = control::socket::bind(&config.control, &config.state_dir)?;
    let routing = control.routing();
    // QUIC (HTTP/3) shares the TLS listener's port number, over UDP (`bind_https`).
    let tls_port = listeners[0].port();
    let xdp = XdpRuntime::start(config.xdp.as_ref(), routing.clone(), tls_port, tls_port)?;
    control.use_xdp(xdp.clone());
    // Validation beyond this edge runs while the edge serves (stopped below).
    let verifier = match &config.verify {
        Some(verify) => Some(control.start_verifier(verify)?),
        None => None,
    };
    let acceptor = control.acceptor().with_classifier(xdp.clone());
    let metrics = Metrics::new();
    metrics.register_collector(Box::new(XdpCollector(xdp.clone())));
    metrics.register_collector(Box::new(AdmissionCollector(routing.clone())));
    control.use_metrics(metrics.clone());
    let router = ChainRouter::new(routing.clone(), listeners.clone()).with_metrics(metrics.clone());
    let h3_addr = quic.as_ref().map(h3::Listener::local_addr).transpose()?;
    let router = match h3_addr {
        Some(addr) => router.with_alt_svc(addr.port()),
        None => router,
    };
    let proxy = Proxy::new(
        router,
        upstream::Client::new(config.origin.clone())?
            .with_local_names(Arc::new(OwnRecords(routing.clone()))),
        PipelineConfig {
            metrics: Some(metrics.clone()),
            ..PipelineConfig::default()
        },
    );

    let bound = Bound {
        https: listeners[0],
        http: listeners.get(1).copied(),
        echo,
        h3: h3_addr,
        ca_pem,
        metrics,
        control: control_socket.path().to_owned(),
        xdp: xdp.clone(),
    };
    let (stop_control, control_stopped) = tokio::sync::oneshot::channel::<()>();
    let control_task = tokio::spawn(control::serve(control_socket, control.clone(), async {
        let _ = control_stopped.await;
    }));
    let reload_task = tokio::spawn(reload_on_hangup(source, control));

    let quic_tls = acceptor.clone();
    // XDP counts QUIC datagrams per chain by the connection IDs named here.
    let connection_ids: Arc<dyn h3::ConnectionIds> = xdp.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let limits = &config.limits;
    let tls_server = downstream::serve(
        https,
        Some(acceptor),
        proxy.clone(),
        limits.clone(),
        stopped(stop_rx.clone()),
    );
    let plain_server = async {
        match http {
            Some(listener) => {
                downstream::serve(
                    listener,
                    None,
                    proxy.clone(),
                    limits.clone(),
                    stopped(stop_rx.clone()),
                )
                .await
            }
            None => Ok(()),
        }
    };
    let quic_server = async {
        match quic {
            Some(listener) => {
                let stopped = stopped(stop_rx.clone());
                listener
                    .serve(
                        proxy.clone(),
                        &quic_tls,
                        limits,
                        Some(connection_ids),
                        stopped,
                    )
                    .await
            }
            None => Ok(()),
        }
    };
    ready(&bound);
    let signal = async {
        shutdown.await;
        tracing::info!("shutting down: no new connections, draining requests in flight");
        let _ = stop_tx.send(true);
    };
    let ((), tls_result, plain_result, quic_result) =
        tokio::join!(signal, tls_server, plain_server, quic_server);
    // Every task holding the control plane ends before returning, so the
    // store's lock is released (an embedding may start again on the same
    // state directory).
    let _ = stop_control.send(());
    reload_task.abort();
    let _ = tokio::join!(control_task, reload_task);
    // (A refresh in flight may hold the verifier a moment longer; it stops
    // when that lets go.)
    if let Some(verifier) = verifier.and_then(Arc::into_inner) {
        verifier.stop().await;
    }
    let detached = xdp.detach().map(drop);
    tls_result.and(plain_result).and(quic_result).and(detached)
}

/// The TLS listener and, unless HTTP/3 is off, the UDP socket on the same
/// port. With port 0 the kernel picks the TCP port, which may be taken on UDP
/// by someone else: then another TCP port is tried (a few times, not forever).
async fn bind_https(config: &Config) -> Result<(TcpListener, Option<h3::Listener>)> {
    let addr = config.listen.https;
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut tried = 0;
    loop {
        tried += 1;
        let tcp = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        match h3::Listener::bind(&config.http3, tcp.local_addr()?) {
            Ok(quic) => return Ok((tcp, quic)),
            Err(error) if tried >= attempts => return Err(error),
            Err(error) => tracing::debug!("trying another port: {error:#}"),
        }
    }
}

/// SIGHUP: read the config again for its certificate files and apply them
/// with the stored state (the config's `state` only seeds an empty store); a
/// config that does not load or validate changes nothing.
async fn reload_on_hangup(source: Source, control: Control) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).expect("installing the SIGHUP handler");
    while hangups.recv().await.is_some() {
        let reloaded = match source.load() {
            // Compiling and minting block: off the async workers.
            Ok(config) => {
                let control = control.clone();
                tokio::task::spawn_blocking(move || control.reload(&config))
                    .await
                    .map_err(anyhow::Error::from)
                    .and_then(|applied| applied.map_err(anyhow::Error::from))
            }
            Err(error) => Err(error),
        };
        match reloaded {
            Ok(()) => tracing::info!("config reloaded"),
            Err(error) => tracing::error!("config reload refused, nothing changed: {error:#}"),
        }
    }
}
