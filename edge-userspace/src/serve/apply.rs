//! The one way the live edge changes: a whole new [`State`] is compiled into
//! a [`Routing`] and a certificate store, the caller's commit runs (the
//! control socket makes the write durable there), and only then both go live.
//! SIGHUP and every control-socket write come through [`Applier::apply`], so
//! what one accepts the other would too.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;

use crate::chain::affected;
use crate::config::{CertificateTier, Config};
use crate::downstream::certs::load_pem;
use crate::downstream::{CertStore, LocalCa, MinTls, Tier, TlsAcceptor};
use crate::routing::Routing;
use crate::state::{Change, HostnameStatus, MinTlsVersion, State};
use crate::xdp::{XdpError, XdpRuntime};

/// Why an apply changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The state does not compile (rulesets) or its certificates cannot be built.
    #[error("{0:#}")]
    Invalid(anyhow::Error),
    /// The caller's commit failed; nothing went live.
    #[error("{0:#}")]
    Commit(anyhow::Error),
}

/// A write the caller validated: the live state it started from and its
/// changes, which took that state to the one applied.
#[derive(Clone, Copy)]
pub struct Write<'a> {
    pub previous: &'a State,
    pub changes: &'a [Change],
}

/// What serves traffic, and what is needed to rebuild it.
pub struct Applier {
    routing: Arc<ArcSwap<Routing>>,
    acceptor: TlsAcceptor,
    ca: LocalCa,
    /// The config's PEM files, read once per config load (start, SIGHUP).
    files: Vec<CertificateFile>,
    /// Certificates minted for names without one, kept across applies:
    /// minting is a key generation and a signature per name, far too slow to
    /// repeat for every hostname on every write.
    minted: Minted,
    /// The XDP classifier, whose routes map every apply brings along.
    xdp: Option<Arc<XdpRuntime>>,
}

struct CertificateFile {
    tier: Tier,
    hostnames: Vec<String>,
    key: Arc<CertifiedKey>,
}

#[derive(Default)]
struct Minted {
    zone: HashMap<String, Arc<CertifiedKey>>,
    custom: HashMap<String, Arc<CertifiedKey>>,
}

impl Minted {
    fn tier(&mut self, tier: Tier) -> &mut HashMap<String, Arc<CertifiedKey>> {
        match tier {
            Tier::Zone => &mut self.zone,
            Tier::CustomHostname => &mut self.custom,
        }
    }
}

impl Applier {
    /// Builds routing and certificates for `state` with the config's files.
    pub fn new(config: &Config, ca: LocalCa, state: &State) -> Result<Applier> {
        let files = certificate_files(config)?;
        let routing = Routing::build(state, None)?;
        let mut minted = Minted::default();
        let certs = certificates(&files, &ca, &Minted::default(), &mut minted, state)?;
        Ok(Applier {
            routing: Arc::new(ArcSwap::from_pointee(routing)),
            acceptor: TlsAcceptor::new(Arc::new(certs))?,
            ca,
            files,
            minted,
            xdp: None,
        })
    }

    /// From now on every apply syncs the XDP routes map first.
    pub fn use_xdp(&mut self, xdp: Arc<XdpRuntime>) {
        self.xdp = Some(xdp);
    }

    /// The live routing, for the request path.
    pub fn routing(&self) -> Arc<ArcSwap<Routing>> {
        self.routing.clone()
    }

    /// The live TLS configuration, for the listeners.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Makes `state` live: compile everything (an error changes nothing),
    /// run `commit`, then switch certificates and routing. Certificates go
    /// first, so that a new hostname never routes before it can handshake.
    /// With `write` (the state `state` was made from, and how), a narrow
    /// write recomputes only the names and zones it touched.
    pub fn apply(
        &mut self,
        state: &State,
        write: Option<Write<'_>>,
        commit: impl FnOnce() -> Result<()>,
    ) -> Result<(), ApplyError> {
        let live = self.routing.load();
        let routing = match write.and_then(|w| affected(w.previous, state, w.changes)) {
            Some(affected) => live.update(state, &affected),
            None => Routing::build(state, Some(&live)),
        }
        .map_err(ApplyError::Invalid)?;
        drop(live);
        // Certificates follow zones and active custom hostnames only: a
        // write of records or rules keeps the store it would rebuild.
        let certs = match write {
            Some(write) if !write.changes.iter().any(changes_certificates) => None,
            _ => {
                let mut minted = Minted::default();
                let certs = certificates(&self.files, &self.ca, &self.minted, &mut minted, state)
                    .map_err(ApplyError::Invalid)?;
                Some((certs, minted))
            }
        };
        // The kernel's routes go first (new before removed, put back if
        // anything fails), so a new hostname is routed by the time it is live.
        if let Some(xdp) = &self.xdp {
            xdp.sync(routing.snapshot()).map_err(|error| match error {
                XdpError::Refused(why) => ApplyError::Invalid(anyhow::anyhow!(why)),
                XdpError::Kernel(error) => ApplyError::Commit(error),
            })?;
        }
        if let Err(error) = commit() {
            if let Some(xdp) = &self.xdp
                && let Err(revert) = xdp.sync(self.routing.load().snapshot())
            {
                tracing::error!("XDP routes not put back after a failed commit: {revert:#}");
            }
            return Err(ApplyError::Commit(error));
        }
        if let Some((certs, minted)) = certs {
            // Building a rustls configuration around a store cannot fail once
            // the acceptor exists (same provider, same versions).
            if let Err(error) = self.acceptor.reload(Arc::new(certs)) {
                tracing::error!("certificates not switched: {error:#}");
            }
            self.minted = minted;
        }
        self.routing.store(Arc::new(routing));
        Ok(())
    }

    /// SIGHUP: the config's certificate files are read again and applied with
    /// `state`; on error the old files stay.
    pub fn reload(&mut self, config: &Config, state: &State) -> Result<(), ApplyError> {
        let previous = std::mem::replace(
            &mut self.files,
            certificate_files(config).map_err(ApplyError::Invalid)?,
        );
        self.apply(state, None, || Ok(()))
            .inspect_err(|_| self.files = previous)
    }
}

/// Whether `change` can change which names have certificates or their TLS
/// policy: zones (apex and wildcard) and custom hostnames (active ones,
/// minimum TLS version).
fn changes_certificates(change: &Change) -> bool {
    match change {
        Change::PutAccount { .. }
        | Change::DeleteAccount { .. }
        | Change::PutDnsRecord { .. }
        | Change::DeleteDnsRecord { .. }
        | Change::PutFallbackOrigin { .. }
        | Change::PutCustomHostnameSettings { .. }
        | Change::PutRuleset { .. } => false,
        Change::PutZone { .. }
        | Change::DeleteZone { .. }
        | Change::PutCustomHostname { .. }
        | Change::DeleteCustomHostname { .. }
        | Change::Observe { .. } => true,
    }
}

fn certificate_files(config: &Config) -> Result<Vec<CertificateFile>> {
    config
        .certificates
        .iter()
        .map(|files| {
            Ok(CertificateFile {
                tier: match files.tier {
                    CertificateTier::Zone => Tier::Zone,
                    CertificateTier::CustomHostname => Tier::CustomHostname,
                },
                hostnames: files.hostnames.clone(),
                key: load_pem(&files.certificate, &files.key)
                    .with_context(|| format!("certificate for {:?}", files.hostnames))?,
            })
        })
        .collect()
}

/// The config's certificates, then one from the local CA for every zone (apex
/// and wildcard) and active custom hostname that has none: taken from
/// `previous` when minted before, else minted now; `used` collects them.
fn certificates(
    files: &[CertificateFile],
    ca: &LocalCa,
    previous: &Minted,
    used: &mut Minted,
    state: &State,
) -> Result<CertStore> {
    let mut store = CertStore::default();
    for file in files {
        store.insert(file.tier, &file.hostnames, file.key.clone());
    }
    let mut ensure = |store: &mut CertStore, tier: Tier, name: &str| -> Result<()> {
        if store.find(name).is_some() {
            return Ok(());
        }
        let name = name.to_ascii_lowercase();
        let key = match previous.tier_ref(tier).get(&name) {
            Some(key) => key.clone(),
            None => ca.mint(std::slice::from_ref(&name))?,
        };
        store.insert(tier, std::slice::from_ref(&name), key.clone());
        used.tier(tier).insert(name, key);
        Ok(())
    };
    for zone in state.zones() {
        ensure(&mut store, Tier::Zone, &zone.zone.name)?;
        ensure(&mut store, Tier::Zone, &format!("*.{}", zone.zone.name))?;
        for hostname in &zone.custom_hostnames {
            if hostname.status != HostnameStatus::Active {
                continue;
            }
            ensure(&mut store, Tier::CustomHostname, &hostname.hostname)?;
            if hostname.ssl.settings.min_tls_version == Some(MinTlsVersion::Tls13) {
                store.set_min_tls(&hostname.hostname, MinTls::Tls13);
            }
        }
    }
    Ok(store)
}

impl Minted {
    fn tier_ref(&self, tier: Tier) -> &HashMap<String, Arc<CertifiedKey>> {
        match tier {
            Tier::Zone => &self.zone,
            Tier::CustomHostname => &self.custom,
        }
    }
}
