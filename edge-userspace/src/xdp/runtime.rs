//! The classifier as `edge serve` runs it: attached at start when the config
//! asks, its routes kept equal to the live snapshot, read on every accepted
//! TLS connection, and driven at run time by the control API (`/xdp`,
//! `/xdp/routes`).
//!
//! The control plane (attach, detach, policy, route sync, status) shares one
//! lock; the accept path never takes it (it reads the flow map through its
//! own handle). Control calls are blocking syscalls, one per changed route:
//! run them off the async workers for large states.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{Context, Result};
use arc_swap::{ArcSwap, ArcSwapOption};
use aya::programs::ProgramError;
use edge_common::maps::FLOWS_MAX;

use super::accept::AcceptPath;
use super::quic::{QuicChains, QuicMaps};
use super::status::{
    Attached as AttachedStatus, KernelRoute, MapSize, MapSizes, ProgramStats, XdpStatus,
};
use super::{
    AttachMode, Classifier, LoadOptions, RouteSync, RoutesFull, UnknownSni, XdpConfig, routes_max,
    wanted,
};
use crate::chain::Snapshot;
use crate::downstream::h3::ConnectionIds;
use crate::downstream::{Classified, ClassifyConnection};
use crate::routing::Routing;

/// Longest interface name the kernel takes (`IFNAMSIZ` without the NUL).
const MAX_INTERFACE: usize = 15;

/// Owned by `edge serve` (handed out as `serve::Bound::xdp`). A state change
/// calls [`XdpRuntime::sync`] with the new snapshot before storing it; the
/// control API's `/xdp` and `/xdp/routes` call [`XdpRuntime::status`],
/// [`XdpRuntime::routes`], [`XdpRuntime::attach`], [`XdpRuntime::detach`]
/// and [`XdpRuntime::set_unknown_sni`]. Serialise state changes and attaches
/// (one writer at a time), so that an attach never syncs from a snapshot a
/// concurrent change is about to replace.
pub struct XdpRuntime {
    tls_port: u16,
    quic_port: u16,
    pin_dir: Option<PathBuf>,
    /// The config's `routes_max`; `None` sizes the map for the state at
    /// each attach.
    routes_max: Option<u32>,
    /// The live routing, which attach syncs from and the accept path reads.
    routing: Arc<ArcSwap<Routing>>,
    accept: AcceptPath,
    control: Mutex<Control>,
    /// The runtime that forwards the program's debug log to tracing, so that
    /// control calls may come from any thread.
    logs: Option<tokio::runtime::Handle>,
    /// The attached program's QUIC connection-ID map, apart from `control`
    /// so that handshakes never wait for a route sync.
    quic: ArcSwapOption<QuicChains<ChainOf>>,
}

/// The chain id of a host name, as the live routing resolves it.
type ChainOf = Box<dyn Fn(&str) -> Option<u32> + Send + Sync>;

struct Control {
    unknown_sni: UnknownSni,
    attached: Option<Attached>,
}

struct Attached {
    classifier: Classifier,
    interface: String,
    mode: AttachMode,
    routes: RouteSync,
}

/// Why a control call failed, split the way an API answers it.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// Not possible as asked (bad or unknown interface, already attached):
    /// nothing changed; a 4xx.
    #[error("{0}")]
    Refused(String),
    /// The kernel or a map operation failed: a 5xx.
    #[error(transparent)]
    Kernel(#[from] anyhow::Error),
}

impl XdpRuntime {
    /// The runtime for an edge whose TLS listener is on `tls_port` and QUIC
    /// on `quic_port` (both watched besides 443), reading `routing`.
    /// Attached at once when `config` is given; detached otherwise, until
    /// [`XdpRuntime::attach`]. Started inside a tokio runtime, it forwards the
    /// program's debug log (target `edge_ebpf`) to tracing.
    pub fn start(
        config: Option<&XdpConfig>,
        routing: Arc<ArcSwap<Routing>>,
        tls_port: u16,
        quic_port: u16,
    ) -> Result<Arc<Self>> {
        let runtime = Arc::new(Self {
            tls_port,
            quic_port,
            pin_dir: config.and_then(|c| c.pin_dir.clone()),
            routes_max: config.and_then(|c| c.routes_max),
            accept: AcceptPath::new(routing.clone()),
            routing,
            control: Mutex::new(Control {
                unknown_sni: config.map(|c| c.unknown_sni).unwrap_or_default(),
                attached: None,
            }),
            logs: tokio::runtime::Handle::try_current().ok(),
            quic: ArcSwapOption::empty(),
        });
        if let Some(config) = config {
            runtime
                .attach(&config.interface, config.mode)
                .with_context(|| format!("config: xdp: attaching to {}", config.interface))?;
        }
        Ok(runtime)
    }

    /// Brings the kernel's routes to `snapshot`: new and changed routes
    /// first, then removals, so a name that stays live never lacks a route.
    /// Call it *before* storing the routing that holds `snapshot`: on error
    /// the kernel is put back to the live routing's routes, so refuse the
    /// change then. A snapshot with more routes than the map holds is
    /// [`XdpError::Refused`] with nothing written. Returns how many routes
    /// changed (0 while detached).
    pub fn sync(&self, snapshot: &Snapshot) -> Result<usize, XdpError> {
        let mut control = self.lock();
        let Some(attached) = control.attached.as_mut() else {
            return Ok(0);
        };
        let routes = &mut attached.classifier.maps.routes;
        match attached.routes.apply(routes, snapshot) {
            Ok(changed) => {
                tracing::debug!(changed, "XDP routes synced");
                Ok(changed)
            }
            Err(error) if error.is::<RoutesFull>() => Err(XdpError::Refused(error.to_string())),
            Err(error) => {
                if let Err(revert) = attached
                    .routes
                    .apply(routes, self.routing.load().snapshot())
                {
                    tracing::error!(
                        "XDP routes could not be put back to the live state: {revert:#}"
                    );
                }
                Err(XdpError::Kernel(
                    error.context("syncing the XDP routes map"),
                ))
            }
        }
    }

    /// Loads the program, fills its maps from the live routing and attaches
    /// it to `interface`: in `mode`, or native with a fallback to generic.
    pub fn attach(
        &self,
        interface: &str,
        mode: Option<AttachMode>,
    ) -> Result<AttachMode, XdpError> {
        check_interface(interface)?;
        let mut control = self.lock();
        if let Some(attached) = &control.attached {
            return Err(XdpError::Refused(format!(
                "XDP is already attached to {}; detach it first",
                attached.interface
            )));
        }
        let routing = self.routing.load();
        let snapshot = routing.snapshot();
        let mut classifier = Classifier::load(LoadOptions {
            pin_dir: self.pin_dir.clone(),
            unknown_sni: control.unknown_sni,
            routes_max: Some(routes_max(self.routes_max, wanted(snapshot).len())),
        })?;
        let settings = &mut classifier.maps.settings;
        settings.set_tls_port(self.tls_port, true)?;
        settings.set_quic_port(self.quic_port, true)?;
        let mut routes = RouteSync::default();
        routes
            .apply(&mut classifier.maps.routes, snapshot)
            .context("filling the XDP routes map")?;
        let flows = classifier.maps.flows.try_clone()?;
        let quic = QuicMaps::take(&mut classifier)?;
        if let Some(logs) = &self.logs {
            let _entered = logs.enter();
            classifier.forward_logs()?;
        }
        let mode = classifier
            .attach_with(interface, mode)
            .map_err(attach_error)?;
        self.accept.use_flows(Some(flows));
        let routing = self.routing.clone();
        let chain_of: ChainOf =
            Box::new(move |sni| routing.load().snapshot().resolve(sni).ok().map(|c| c.id));
        self.quic
            .store(Some(Arc::new(QuicChains::new(quic, chain_of))));
        control.attached = Some(Attached {
            classifier,
            interface: interface.to_owned(),
            mode,
            routes,
        });
        Ok(mode)
    }

    /// Detaches and unloads the program (its maps and counters go with it;
    /// the next attach starts afresh). `false` if it was not attached.
    pub fn detach(&self) -> Result<bool> {
        let mut control = self.lock();
        self.accept.use_flows(None);
        self.quic.store(None);
        let Some(mut attached) = control.attached.take() else {
            return Ok(false);
        };
        attached.classifier.detach()?;
        tracing::info!(interface = %attached.interface, "XDP SNI classifier detached");
        Ok(true)
    }

    /// What XDP does with SNIs that have no route: now if attached, and on
    /// every later attach.
    pub fn set_unknown_sni(&self, policy: UnknownSni) -> Result<()> {
        let mut control = self.lock();
        if let Some(attached) = control.attached.as_mut() {
            attached.classifier.maps.settings.set_unknown_sni(policy)?;
        }
        control.unknown_sni = policy;
        Ok(())
    }

    /// The unknown-SNI policy: live if attached, else the next attach's.
    pub fn unknown_sni(&self) -> UnknownSni {
        self.lock().unknown_sni
    }

    /// Whether the program is attached now.
    pub fn is_attached(&self) -> bool {
        self.lock().attached.is_some()
    }

    /// `GET /xdp`: attachment, map sizes, the program's counters and how
    /// connections were classified.
    pub fn status(&self) -> Result<XdpStatus> {
        let control = self.lock();
        let attached = control
            .attached
            .as_ref()
            .map(Attached::status)
            .transpose()?;
        Ok(XdpStatus {
            attached,
            unknown_sni: control.unknown_sni,
            tls_port: self.tls_port,
            quic_port: self.quic_port,
            connections: self.accept.counts(),
        })
    }

    /// `GET /xdp/routes`: the routes map as the kernel holds it, by name then
    /// hash (empty while detached). One syscall per entry.
    pub fn routes(&self) -> Result<Vec<KernelRoute>> {
        let control = self.lock();
        let Some(attached) = control.attached.as_ref() else {
            return Ok(Vec::new());
        };
        let names = attached.routes.names();
        let mut routes = attached
            .classifier
            .maps
            .routes
            .entries()
            .map(|entry| {
                entry.map(|(sni_hash, target)| KernelRoute {
                    sni_hash,
                    hostname: names.get(&sni_hash).map(|name| (*name).to_owned()),
                    chain_id: target.chain_id,
                    queue: target.queue,
                    action: target.action,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        routes.sort_by(|a, b| (&a.hostname, a.sni_hash).cmp(&(&b.hostname, b.sni_hash)));
        Ok(routes)
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        // Every change is written to the kernel before it is recorded here,
        // so a panic half-way leaves nothing inconsistent behind.
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Attached {
    fn status(&self) -> Result<AttachedStatus> {
        let stats = ProgramStats::read(&self.classifier.maps)?;
        Ok(AttachedStatus {
            interface: self.interface.clone(),
            mode: self.mode,
            program_id: self.classifier.program_id()?,
            pin_dir: self.classifier.pin_dir().map(ToOwned::to_owned),
            maps: MapSizes {
                routes: MapSize {
                    entries: Some(self.routes.installed()),
                    max_entries: self.classifier.maps.routes.max_routes(),
                },
                flows: MapSize {
                    entries: None,
                    max_entries: FLOWS_MAX,
                },
                chain_counters: MapSize {
                    entries: Some(stats.chains.len()),
                    max_entries: self.classifier.maps.routes.max_chains(),
                },
            },
            counters: stats.counters,
            chains: stats.chains,
            chain_overflow: stats.chain_overflow,
        })
    }
}

impl ClassifyConnection for XdpRuntime {
    fn classify(
        &self,
        peer: std::net::SocketAddr,
        local: std::net::SocketAddr,
        sni: Option<&str>,
    ) -> Classified {
        self.accept.classify(peer, local, sni)
    }
}

/// The QUIC listener's [`ConnectionIds`] (`edge serve` hands the runtime
/// itself to it): a connection's CID goes into the program attached when its
/// handshake named the host, so that XDP counts its datagrams to the chain.
/// Connections named before a detach and re-attach are not in the new
/// program's map (each attach loads it afresh) and count as unrouted QUIC.
impl ConnectionIds for XdpRuntime {
    fn named(&self, cid: &[u8], server_name: &str) {
        if let Some(quic) = self.quic.load().as_ref() {
            quic.named(cid, server_name);
        }
    }

    fn closed(&self, cid: &[u8]) {
        if let Some(quic) = self.quic.load().as_ref() {
            quic.closed(cid);
        }
    }
}

impl std::fmt::Debug for XdpRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpRuntime")
            .field("tls_port", &self.tls_port)
            .field("quic_port", &self.quic_port)
            .finish_non_exhaustive()
    }
}

fn check_interface(name: &str) -> Result<(), XdpError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_INTERFACE
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if valid {
        Ok(())
    } else {
        Err(XdpError::Refused(format!(
            "{name:?} is not an interface name (1 to {MAX_INTERFACE} printable characters, no '/' or ':')"
        )))
    }
}

fn attach_error(error: anyhow::Error) -> XdpError {
    let unknown = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ProgramError>(),
            Some(ProgramError::UnknownInterface { .. })
        )
    });
    if unknown {
        XdpError::Refused(format!("{error:#}"))
    } else {
        XdpError::Kernel(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked_before_the_kernel_sees_them() {
        for good in ["eth0", "veth-a.10", "exh-serve", "a23456789012345"] {
            assert!(check_interface(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "eth0:1",
            "eth 0",
            "a234567890123456",
            "é",
        ] {
            assert!(
                matches!(check_interface(bad), Err(XdpError::Refused(_))),
                "{bad:?}"
            );
        }
    }
}
