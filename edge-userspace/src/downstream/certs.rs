//! Certificate selection by SNI.
//!
//! Two tiers, searched in order: certificates of zones, then certificates of custom hostnames.
//! Within a tier the exact name wins over the wildcard one level up. The zone tier comes first
//! because Cloudflare serves a zone's own certificate over a custom hostname's when both cover
//! the name, so a customer who onboards their own zone keeps their own certificate.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::ca::LocalCa;

/// Which kind of object a certificate belongs to; decides precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// A zone's own certificate: always preferred.
    Zone,
    /// A custom hostname's certificate (in the SaaS provider's zone).
    CustomHostname,
}

/// Lowest TLS version a hostname accepts (`ssl.settings.min_tls_version`).
///
/// Only the versions this edge speaks are representable, so a 1.0/1.1 setting maps to `Tls12`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum MinTls {
    #[default]
    Tls12,
    Tls13,
}

/// Persistent maps: a write of one custom hostname among a million copies
/// the live store in O(1) and changes its own name.
type Map<V> = imbl::HashMap<String, V>;

/// The certificates and TLS policy of every hostname, looked up by SNI.
#[derive(Default, Clone)]
pub struct CertStore {
    zone: Map<Arc<CertifiedKey>>,
    custom: Map<Arc<CertifiedKey>>,
    min_tls: Map<MinTls>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("zone", &self.zone.keys().collect::<Vec<_>>())
            .field("custom", &self.custom.keys().collect::<Vec<_>>())
            .field("min_tls", &self.min_tls)
            .finish()
    }
}

impl CertStore {
    /// Adds a certificate for `names` (exact or `*.` wildcard) in `tier`.
    pub fn insert(&mut self, tier: Tier, names: &[String], key: Arc<CertifiedKey>) {
        let map = match tier {
            Tier::Zone => &mut self.zone,
            Tier::CustomHostname => &mut self.custom,
        };
        for name in names {
            map.insert(name.to_ascii_lowercase(), key.clone());
        }
    }

    /// Mints a certificate from `ca` for `name` unless one already covers it.
    pub fn ensure(&mut self, tier: Tier, name: &str, ca: &LocalCa) -> Result<()> {
        if self.find(name).is_none() {
            let names = [name.to_ascii_lowercase()];
            self.insert(tier, &names, ca.mint(&names)?);
        }
        Ok(())
    }

    /// Forgets the custom-hostname tier's certificate for exactly `name`.
    pub fn remove_custom(&mut self, name: &str) {
        self.custom.remove(&name.to_ascii_lowercase());
    }

    /// Forgets the minimum TLS version set for exactly `name`.
    pub fn remove_min_tls(&mut self, name: &str) {
        self.min_tls.remove(&name.to_ascii_lowercase());
    }

    /// Sets the minimum TLS version for a hostname (exact or `*.` wildcard).
    pub fn set_min_tls(&mut self, name: &str, min: MinTls) {
        self.min_tls.insert(name.to_ascii_lowercase(), min);
    }

    /// The minimum TLS version for `sni`; names without a setting accept TLS 1.2.
    pub fn min_tls(&self, sni: &str) -> MinTls {
        lookup(&self.min_tls, &sni.to_ascii_lowercase())
            .copied()
            .unwrap_or_default()
    }

    /// The certificate to present for `sni`, if any.
    pub fn find(&self, sni: &str) -> Option<&Arc<CertifiedKey>> {
        let sni = sni.to_ascii_lowercase();
        lookup(&self.zone, &sni).or_else(|| lookup(&self.custom, &sni))
    }
}

/// Exact name first, then the wildcard one label up (`*.example.com` covers
/// `a.example.com`, not `example.com` and not `a.b.example.com`, as in X.509).
fn lookup<'a, V: Clone>(map: &'a Map<V>, name: &str) -> Option<&'a V> {
    map.get(name).or_else(|| {
        let (_, parent) = name.split_once('.')?;
        map.get(&format!("*.{parent}"))
    })
}

/// Reads a certificate chain and its key, checking that they match.
pub fn load_pem(cert_path: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert_path.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} holds no certificate",
        cert_path.display()
    );
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("reading key {}", key_path.display()))?;
    let signing_key = any_supported_type(&key)
        .with_context(|| format!("unsupported key in {}", key_path.display()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().with_context(|| {
        format!(
            "{} does not match {}",
            key_path.display(),
            cert_path.display()
        )
    })?;
    Ok(Arc::new(certified))
}

/// rustls hook: presents the certificate chosen by [`CertStore::find`].
///
/// A ClientHello without SNI, or for a name with no certificate, gets no certificate and so an
/// `unrecognized_name`-style handshake failure, which the reference allows for unknown names.
#[derive(Debug)]
pub struct SniResolver(pub Arc<CertStore>);

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.find(hello.server_name()?).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(ca: &LocalCa) -> (CertStore, Arc<CertifiedKey>, Arc<CertifiedKey>) {
        let zone = ca.mint(&["*.example.com".into()]).unwrap();
        let custom = ca.mint(&["shop.example.com".into()]).unwrap();
        let mut store = CertStore::default();
        store.insert(
            Tier::CustomHostname,
            &["shop.example.com".into()],
            custom.clone(),
        );
        store.insert(Tier::Zone, &["*.example.com".into()], zone.clone());
        (store, zone, custom)
    }

    #[test]
    fn zone_tier_beats_custom_hostname_even_when_wildcard() {
        let dir = std::env::temp_dir().join(format!("edge-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = LocalCa::load_or_create(&dir).unwrap();
        let (store, zone, _) = store_with(&ca);
        assert!(Arc::ptr_eq(store.find("SHOP.example.com").unwrap(), &zone));
        assert!(Arc::ptr_eq(store.find("a.example.com").unwrap(), &zone));
        assert!(store.find("example.com").is_none());
        assert!(store.find("a.b.example.com").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn min_tls_exact_then_wildcard() {
        let mut store = CertStore::default();
        store.set_min_tls("*.example.com", MinTls::Tls13);
        store.set_min_tls("old.example.com", MinTls::Tls12);
        assert_eq!(store.min_tls("new.example.com"), MinTls::Tls13);
        assert_eq!(store.min_tls("old.example.com"), MinTls::Tls12);
        assert_eq!(store.min_tls("other.net"), MinTls::Tls12);
    }
}
