//! `edge serve`: builds every part from the config and runs the listeners
//! until SIGTERM/SIGINT (drain) while SIGHUP reloads the config in place.

pub mod demo;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{CertificateTier, Config};
use crate::downstream::{self, CertStore, Limits, LocalCa, MinTls, Tier, TlsAcceptor};
use crate::pipeline::{PipelineConfig, Proxy};
use crate::routing::{ChainRouter, Routing};
use crate::state::{HostnameStatus, MinTlsVersion, State};
use crate::upstream::{self, ClientConfig};
use crate::xdp::XdpRuntime;

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
    pub ca_pem: PathBuf,
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

    let https = TcpListener::bind(config.listen.https)
        .await
        .with_context(|| format!("binding {}", config.listen.https))?;
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

    let routing = Arc::new(ArcSwap::from_pointee(Routing::build(&config.state, None)?));
    // QUIC shares the TLS listener's port number, over UDP.
    let tls_port = listeners[0].port();
    let xdp = XdpRuntime::start(config.xdp.as_ref(), routing.clone(), tls_port, tls_port)?;
    let acceptor =
        TlsAcceptor::new(Arc::new(certificates(&config, &ca)?))?.with_classifier(xdp.clone());
    let router = ChainRouter::new(routing.clone(), listeners.clone());
    let proxy = Proxy::new(
        router,
        upstream::Client::new(ClientConfig::default())?,
        PipelineConfig::default(),
    );

    let bound = Bound {
        https: listeners[0],
        http: listeners.get(1).copied(),
        echo,
        ca_pem: ca.cert_path().to_owned(),
        xdp: xdp.clone(),
    };
    tokio::spawn(reload_on_hangup(
        source,
        routing,
        acceptor.clone(),
        ca,
        xdp.clone(),
    ));

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let tls_server = downstream::serve(
        https,
        Some(acceptor),
        proxy.clone(),
        Limits::default(),
        stopped(stop_rx.clone()),
    );
    let plain_server = async {
        match http {
            Some(listener) => {
                downstream::serve(
                    listener,
                    None,
                    proxy.clone(),
                    Limits::default(),
                    stopped(stop_rx.clone()),
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
    let ((), tls_result, plain_result) = tokio::join!(signal, tls_server, plain_server);
    let detached = xdp.detach().map(drop);
    tls_result.and(plain_result).and(detached)
}

/// SIGHUP: read the config again and switch zones, rules and certificates
/// together; a config that does not load or validate changes nothing.
async fn reload_on_hangup(
    source: Source,
    routing: Arc<ArcSwap<Routing>>,
    acceptor: TlsAcceptor,
    ca: LocalCa,
    xdp: Arc<XdpRuntime>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).expect("installing the SIGHUP handler");
    while hangups.recv().await.is_some() {
        let reloaded = source.load().and_then(|config| {
            let next = Routing::build(&config.state, Some(&routing.load()))?;
            let certs = Arc::new(certificates(&config, &ca)?);
            xdp.sync(next.snapshot())?;
            acceptor.reload(certs)?;
            routing.store(Arc::new(next));
            Ok(())
        });
        match reloaded {
            Ok(()) => tracing::info!("config reloaded"),
            Err(error) => tracing::error!("config reload refused, nothing changed: {error:#}"),
        }
    }
}

/// Certificates from the config's PEM files, then one minted by the local CA
/// for every zone (apex and wildcard) and custom hostname that has none.
fn certificates(config: &Config, ca: &LocalCa) -> Result<CertStore> {
    let mut store = CertStore::default();
    for files in &config.certificates {
        let tier = match files.tier {
            CertificateTier::Zone => Tier::Zone,
            CertificateTier::CustomHostname => Tier::CustomHostname,
        };
        store.insert_pem(tier, &files.hostnames, &files.certificate, &files.key)?;
    }
    mint_missing(&mut store, &config.state, ca)?;
    Ok(store)
}

fn mint_missing(store: &mut CertStore, state: &State, ca: &LocalCa) -> Result<()> {
    for zone in &state.zones {
        store.ensure(Tier::Zone, &zone.zone.name, ca)?;
        store.ensure(Tier::Zone, &format!("*.{}", zone.zone.name), ca)?;
        for hostname in &zone.custom_hostnames {
            if hostname.status != HostnameStatus::Active {
                continue;
            }
            store.ensure(Tier::CustomHostname, &hostname.hostname, ca)?;
            if hostname.ssl.settings.min_tls_version == Some(MinTlsVersion::Tls13) {
                store.set_min_tls(&hostname.hostname, MinTls::Tls13);
            }
        }
    }
    Ok(())
}
