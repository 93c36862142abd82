//! The accept path: a new TLS connection's chain, decided once its
//! ClientHello has been read and before the handshake finishes.
//!
//! The SNI is resolved in userspace against the live snapshot, always: the
//! name is the identity. With the classifier attached, XDP decided while the
//! hello crossed the interface by the name's hash; one flow-map lookup reads
//! that decision as a cross-check, counted when it disagrees.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use arc_swap::{ArcSwap, ArcSwapOption};
use edge_common::sni;

use super::status::AcceptCounts;
use super::{Flows, Verdict};
use crate::chain::{ErrorKind, Snapshot};
use crate::downstream::Classified;
use crate::routing::Routing;

pub(super) struct AcceptPath {
    routing: Arc<ArcSwap<Routing>>,
    /// Set while the classifier is attached; its own handle on the flow map,
    /// so that lookups never wait for the control plane.
    flows: ArcSwapOption<Flows>,
    kernel: AtomicU64,
    userspace: AtomicU64,
    unseen: AtomicU64,
    blocked: AtomicU64,
    disagreed: AtomicU64,
}

/// Why XDP's decision could not give the connection its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fallback {
    Detached,
    /// No flow entry: the connection did not cross the attached interface.
    Unseen,
    LookupFailed,
    /// Unknown SNI, no SNI, or a hello XDP could not read to the end.
    NoRoute(Verdict),
    /// The SNI rustls read is not the one XDP hashed (a hello crafted to
    /// read differently to the two parsers, or a stale entry of an earlier
    /// connection with the same addresses): userspace decides.
    SniMismatch,
    /// The route's chain is not in the live snapshot: chain 0 (names left to
    /// userspace) or a reload half-way between the kernel and the snapshot.
    NoChain(u32),
}

impl AcceptPath {
    pub(super) fn new(routing: Arc<ArcSwap<Routing>>) -> Self {
        Self {
            routing,
            flows: ArcSwapOption::empty(),
            kernel: AtomicU64::new(0),
            userspace: AtomicU64::new(0),
            unseen: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            disagreed: AtomicU64::new(0),
        }
    }

    /// Starts (`Some`) or stops (`None`) reading XDP's decisions.
    pub(super) fn use_flows(&self, flows: Option<Flows>) {
        self.flows.store(flows.map(Arc::new));
    }

    pub(super) fn counts(&self) -> AcceptCounts {
        AcceptCounts {
            kernel: self.kernel.load(Relaxed),
            userspace: self.userspace.load(Relaxed),
            unseen: self.unseen.load(Relaxed),
            blocked: self.blocked.load(Relaxed),
            disagreed: self.disagreed.load(Relaxed),
        }
    }

    /// The connection's chain, always from its own name: a 64-bit unkeyed hash cannot stand
    /// for a hostname's identity (two names with one hash would share a chain). XDP's verdict
    /// for the flow is a cross-check: counted in `kernel` when it agrees, in `disagreed` (and
    /// logged) when it names another chain.
    pub(super) fn classify(
        &self,
        peer: SocketAddr,
        local: SocketAddr,
        sni: Option<&str>,
    ) -> Classified {
        let routing = self.routing.load();
        let snapshot = routing.snapshot();
        let classified = from_sni(snapshot, sni);
        let kernel = match self.flows.load().as_deref() {
            Some(flows) => from_kernel(flows, snapshot, peer, local, sni),
            None => Err(Fallback::Detached),
        };
        match kernel {
            Ok(kernel) if same(&kernel, &classified) => {
                self.kernel.fetch_add(1, Relaxed);
                tracing::debug!(%peer, path = "kernel", outcome = ?Outcome(&classified), "TLS connection classified");
            }
            Ok(kernel) => {
                self.disagreed.fetch_add(1, Relaxed);
                tracing::warn!(%peer, sni, kernel = ?Outcome(&kernel), by_name = ?Outcome(&classified), "XDP's verdict disagrees with the name's chain; the name's is used");
            }
            Err(fallback) => {
                self.userspace.fetch_add(1, Relaxed);
                if fallback == Fallback::Unseen {
                    self.unseen.fetch_add(1, Relaxed);
                }
                tracing::debug!(%peer, path = "userspace", ?fallback, outcome = ?Outcome(&classified), "TLS connection classified");
            }
        }
        if let Classified::Blocked = classified {
            self.blocked.fetch_add(1, Relaxed);
        }
        classified
    }
}

/// The same decision: one chain, or both blocked.
fn same(a: &Classified, b: &Classified) -> bool {
    match (a, b) {
        (Classified::Chain(a), Classified::Chain(b)) => a.id == b.id,
        (Classified::Blocked, Classified::Blocked)
        | (Classified::Unrouted, Classified::Unrouted) => true,
        _ => false,
    }
}

fn from_kernel(
    flows: &Flows,
    snapshot: &Snapshot,
    peer: SocketAddr,
    local: SocketAddr,
    sni: Option<&str>,
) -> Result<Classified, Fallback> {
    let info = match flows.lookup(peer, local) {
        Ok(Some(info)) => info,
        Ok(None) => return Err(Fallback::Unseen),
        Err(error) => {
            tracing::debug!(%peer, %error, "XDP flow lookup failed");
            return Err(Fallback::LookupFailed);
        }
    };
    let chain_id = match info.verdict {
        Verdict::Routed { chain_id, .. } => Some(chain_id),
        Verdict::Blocked { .. } => None,
        other => return Err(Fallback::NoRoute(other)),
    };
    if sni.map(|name| sni::hash(name.as_bytes())) != Some(info.sni_hash) {
        return Err(Fallback::SniMismatch);
    }
    match chain_id {
        Some(id) => snapshot
            .chain(id)
            .map(|chain| Classified::Chain(chain.clone()))
            .ok_or(Fallback::NoChain(id)),
        None => Ok(Classified::Blocked),
    }
}

fn from_sni(snapshot: &Snapshot, sni: Option<&str>) -> Classified {
    match sni.map(|name| snapshot.resolve(name)) {
        Some(Ok(chain)) => Classified::Chain(chain.clone()),
        Some(Err(error)) if error.kind() == ErrorKind::HostnameBlocked => Classified::Blocked,
        Some(Err(_)) | None => Classified::Unrouted,
    }
}

/// A short form of [`Classified`] for debug logs: the chain id, not the chain.
struct Outcome<'a>(&'a Classified);

impl std::fmt::Debug for Outcome<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Classified::Chain(chain) => write!(f, "chain {}", chain.id),
            Classified::Unrouted => f.write_str("unrouted"),
            Classified::Blocked => f.write_str("blocked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEMO};

    fn demo() -> Arc<ArcSwap<Routing>> {
        let config = Config::parse(DEMO).unwrap();
        Arc::new(ArcSwap::from_pointee(
            Routing::build(&config.state, None).unwrap(),
        ))
    }

    const PEER: &str = "198.18.0.2:40000";
    const LOCAL: &str = "198.18.0.1:8443";

    #[test]
    fn detached_classifies_by_sni_and_counts_userspace() {
        let path = AcceptPath::new(demo());
        let (peer, local) = (PEER.parse().unwrap(), LOCAL.parse().unwrap());
        let Classified::Chain(chain) = path.classify(peer, local, Some("MyStore.example.com"))
        else {
            panic!("an active custom hostname has a chain");
        };
        assert!(chain.o2o);
        assert!(matches!(
            path.classify(peer, local, Some("nowhere.example.org")),
            Classified::Unrouted
        ));
        assert!(matches!(
            path.classify(peer, local, None),
            Classified::Unrouted
        ));
        assert_eq!(
            path.counts(),
            AcceptCounts {
                kernel: 0,
                userspace: 3,
                unseen: 0,
                blocked: 0,
                disagreed: 0
            }
        );
    }

    /// The router trusts a connection's chain while `Snapshot::chain` holds
    /// the very same `Arc`: true for every chain the SNI resolves to.
    #[test]
    fn sni_chains_are_the_snapshots_own() {
        let routing = demo();
        let routing = routing.load();
        let snapshot = routing.snapshot();
        let mut seen = 0;
        for route in snapshot.routes().filter(|r| !r.blocked) {
            let name = route.hostname.replace("*.", "any.");
            let Classified::Chain(chain) = from_sni(snapshot, Some(&name)) else {
                panic!("{name} has a chain");
            };
            assert!(
                Arc::ptr_eq(snapshot.chain(chain.id).unwrap(), &chain),
                "{name}"
            );
            seen += 1;
        }
        assert!(seen >= 2, "the demo routes its two custom hostnames");
    }
}
