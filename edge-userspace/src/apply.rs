//! The one way the live edge changes: a whole new [`State`] is compiled into
//! a [`Routing`] and a certificate store, the caller's commit runs (the
//! control socket makes the write durable there), and only then both go live.
//! SIGHUP and every control-socket write come through [`Applier::apply`], so
//! what one accepts the other would too.

use std::sync::Arc;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;

use crate::chain::affected;
use crate::config::{CertificateTier, Config};
use crate::downstream::certs::load_pem;
use crate::downstream::{CertStore, LocalCa, MinTls, Tier, TlsAcceptor};
use crate::routing::Routing;
use crate::state::{Change, CustomHostname, HostnameStatus, MinTlsVersion, State};
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

/// Persistent maps, so that a hostname write copies them in O(1).
#[derive(Default, Clone)]
struct Minted {
    zone: imbl::HashMap<String, Arc<CertifiedKey>>,
    custom: imbl::HashMap<String, Arc<CertifiedKey>>,
}

impl Minted {
    fn tier(&mut self, tier: Tier) -> &mut imbl::HashMap<String, Arc<CertifiedKey>> {
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
        // write of records or rules keeps the store it would rebuild, and
        // one of custom hostnames redoes their names alone.
        let certs = match write {
            Some(write) if !write.changes.iter().any(changes_certificates) => None,
            Some(write) if write.changes.iter().all(|c| hostname_of(c).is_some()) => {
                let live = self.acceptor.certs();
                Some(
                    hostname_certificates(&live, &self.ca, &self.minted, write, state)
                        .map_err(ApplyError::Invalid)?,
                )
            }
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
    let mut mint = Mint { ca, previous, used };
    for zone in state.zones() {
        mint.ensure(&mut store, Tier::Zone, &zone.zone.name)?;
        mint.ensure(&mut store, Tier::Zone, &format!("*.{}", zone.zone.name))?;
        for hostname in &zone.custom_hostnames {
            mint.hostname(&mut store, hostname)?;
        }
    }
    Ok(store)
}

/// The live store with the names of the custom hostnames `write` touched
/// redone, and the minted certificates it then uses. Names are unique among
/// custom hostnames, so no other hostname holds them; certificates from the
/// config's files are never removed.
fn hostname_certificates(
    live: &CertStore,
    ca: &LocalCa,
    previous: &Minted,
    write: Write<'_>,
    state: &State,
) -> Result<(CertStore, Minted)> {
    let touched: Vec<&CustomHostname> = write
        .changes
        .iter()
        .filter_map(hostname_of)
        .flat_map(|(zone_id, id)| {
            [write.previous, state]
                .into_iter()
                .filter_map(move |s| s.zone(zone_id)?.custom_hostnames.get(id))
        })
        .collect();
    let mut store = live.clone();
    let mut used = previous.clone();
    for hostname in &touched {
        let name = hostname.hostname.to_ascii_lowercase();
        if used.custom.remove(&name).is_some() {
            store.remove_custom(&name);
        }
        store.remove_min_tls(&name);
    }
    let mut mint = Mint {
        ca,
        previous,
        used: &mut used,
    };
    for (zone_id, id) in write.changes.iter().filter_map(hostname_of) {
        if let Some(hostname) = state.zone(zone_id).and_then(|z| z.custom_hostnames.get(id)) {
            mint.hostname(&mut store, hostname)?;
        }
    }
    Ok((store, used))
}

/// The custom hostname a change is about, if that is all it is about.
fn hostname_of(change: &Change) -> Option<(&str, &str)> {
    match change {
        Change::PutCustomHostname {
            zone_id,
            custom_hostname,
        } => Some((zone_id, &custom_hostname.id)),
        Change::DeleteCustomHostname { zone_id, id }
        | Change::Observe {
            zone_id,
            custom_hostname_id: id,
            ..
        } => Some((zone_id, id)),
        _ => None,
    }
}

/// Certificates for names without one: taken from `previous` when minted
/// before, else minted now; `used` collects them.
struct Mint<'a> {
    ca: &'a LocalCa,
    previous: &'a Minted,
    used: &'a mut Minted,
}

impl Mint<'_> {
    fn ensure(&mut self, store: &mut CertStore, tier: Tier, name: &str) -> Result<()> {
        if store.find(name).is_some() {
            return Ok(());
        }
        let name = name.to_ascii_lowercase();
        let key = match self.previous.tier_ref(tier).get(&name) {
            Some(key) => key.clone(),
            None => self.ca.mint(std::slice::from_ref(&name))?,
        };
        store.insert(tier, std::slice::from_ref(&name), key.clone());
        self.used.tier(tier).insert(name, key);
        Ok(())
    }

    /// An active custom hostname's certificate and TLS policy.
    fn hostname(&mut self, store: &mut CertStore, hostname: &CustomHostname) -> Result<()> {
        if hostname.status != HostnameStatus::Active {
            return Ok(());
        }
        self.ensure(store, Tier::CustomHostname, &hostname.hostname)?;
        if hostname.ssl.settings.min_tls_version == Some(MinTlsVersion::Tls13) {
            store.set_min_tls(&hostname.hostname, MinTls::Tls13);
        }
        Ok(())
    }
}

impl Minted {
    fn tier_ref(&self, tier: Tier) -> &imbl::HashMap<String, Arc<CertifiedKey>> {
        match tier {
            Tier::Zone => &self.zone,
            Tier::CustomHostname => &self.custom,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn hostname(id: &str, name: &str, status: &str, tls13: bool) -> Change {
        let mut custom_hostname: CustomHostname =
            serde_json::from_value(json!({"id": id, "hostname": name, "status": status})).unwrap();
        if tls13 {
            custom_hostname.ssl.settings.min_tls_version = Some(MinTlsVersion::Tls13);
        }
        Change::PutCustomHostname {
            zone_id: "zp".into(),
            custom_hostname,
        }
    }

    /// Hostname writes redo their own names in the live store: every name
    /// then gets the certificate and TLS policy a store built whole gives
    /// it, certificates from files stay, and nothing is minted twice.
    #[test]
    fn hostname_writes_update_the_store_as_a_full_build_would() {
        let dir = std::env::temp_dir().join(format!("edge-apply-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = LocalCa::load_or_create(&dir).unwrap();
        let files = [CertificateFile {
            tier: Tier::CustomHostname,
            hostnames: vec!["file.example.net".into()],
            key: ca.mint(&["file.example.net".into()]).unwrap(),
        }];
        let mut state: State = serde_json::from_value(json!({
            "accounts": [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}],
            "zones": [
                {"zone": {"id": "zp", "name": "saas.com", "account": {"id": "b"}}},
                {"zone": {"id": "zc", "name": "example.com", "account": {"id": "a"}}}
            ]
        }))
        .unwrap();
        let mut minted = Minted::default();
        let mut live = certificates(&files, &ca, &Minted::default(), &mut minted, &state).unwrap();
        let writes = [
            vec![hostname("h1", "one.example.org", "active", false)],
            vec![
                hostname("h2", "two.example.org", "pending", false),
                hostname("h3", "file.example.net", "active", true),
            ],
            vec![hostname("h2", "two.example.org", "active", true)],
            vec![hostname("h1", "renamed.example.org", "active", false)],
            vec![hostname("h4", "shop.example.com", "active", false)],
            vec![Change::DeleteCustomHostname {
                zone_id: "zp".into(),
                id: "h3".into(),
            }],
            vec![hostname("h2", "two.example.org", "blocked", false)],
        ];
        let names = [
            "one.example.org",
            "renamed.example.org",
            "two.example.org",
            "file.example.net",
            "shop.example.com",
            "example.com",
        ];
        for changes in writes {
            let next = state.apply_all(changes.clone()).unwrap();
            let write = Write {
                previous: &state,
                changes: &changes,
            };
            let (store, used) = hostname_certificates(&live, &ca, &minted, write, &next).unwrap();
            // Built whole from what the update minted: any certificate the
            // update lacks or holds elsewhere shows as a different key.
            let mut whole_used = Minted::default();
            let whole = certificates(&files, &ca, &used, &mut whole_used, &next).unwrap();
            for name in names {
                let (got, want) = (store.find(name), whole.find(name));
                assert_eq!(got.is_some(), want.is_some(), "{name} after {changes:?}");
                if let (Some(got), Some(want)) = (got, want) {
                    assert!(Arc::ptr_eq(got, want), "{name} after {changes:?}");
                }
                assert_eq!(store.min_tls(name), whole.min_tls(name), "{name}");
            }
            assert!(used.custom.keys().all(|name| whole.find(name).is_some()));
            (state, live, minted) = (next, store, used);
        }
        assert!(
            live.find("file.example.net").is_some(),
            "file certificates stay"
        );
        assert!(live.find("one.example.org").is_none(), "renamed away");
        assert!(live.find("two.example.org").is_none(), "blocked");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
