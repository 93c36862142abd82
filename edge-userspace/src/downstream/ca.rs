//! The local certificate authority that signs certificates for hostnames that have none.
//!
//! Its certificate is written as `ca.pem` into the state directory so that clients (the demo's
//! `curl --cacert`, the tests' reqwest) can trust it; the key stays beside it so that a restart
//! keeps the same CA and clients do not have to re-trust anything.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// File name of the CA certificate clients are told to trust.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA key; readable by the owner only.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// A CA able to mint leaf certificates.
pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_path: PathBuf,
}

impl LocalCa {
    /// Loads the CA from `state_dir`, or creates it (and the directory) when absent.
    ///
    /// A half-present CA (certificate without key or the reverse) is an error rather than
    /// silently replaced, because replacing it would break every client that trusts it.
    pub fn load_or_create(state_dir: &Path) -> Result<Self> {
        let cert_path = state_dir.join(CA_CERT_FILE);
        let key_path = state_dir.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => Self::load(cert_path, &key_path),
            (false, false) => Self::create(state_dir, cert_path, &key_path),
            _ => anyhow::bail!(
                "{} holds only one of {CA_CERT_FILE} and {CA_KEY_FILE}: restore the missing file or remove both",
                state_dir.display()
            ),
        }
    }

    fn load(cert_path: PathBuf, key_path: &Path) -> Result<Self> {
        let cert_pem = fs::read_to_string(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        let key_pem = fs::read_to_string(key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("parsing {}", key_path.display()))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .with_context(|| format!("parsing {}", cert_path.display()))?;
        let cert_der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .with_context(|| format!("parsing {}", cert_path.display()))?;
        Ok(Self {
            issuer,
            cert_der,
            cert_path,
        })
    }

    fn create(state_dir: &Path, cert_path: PathBuf, key_path: &Path) -> Result<Self> {
        fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "edge local CA");
        name.push(DnType::OrganizationName, "edge");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        write_private(key_path, key.serialize_pem().as_bytes())?;
        fs::write(&cert_path, cert.pem())
            .with_context(|| format!("writing {}", cert_path.display()))?;
        Ok(Self {
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
            cert_path,
        })
    }

    /// Where the CA certificate lives (what clients pass to `--cacert`).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The CA certificate in DER, for building trust stores in-process.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Mints a server certificate for `names` (wildcards allowed), chained to this CA.
    pub fn mint(&self, names: &[String]) -> Result<Arc<CertifiedKey>> {
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut dn = DistinguishedName::new();
        if let Some(first) = names.first() {
            dn.push(DnType::CommonName, first.as_str());
        }
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing_key = any_supported_type(&key_der)?;
        Ok(Arc::new(CertifiedKey::new(
            vec![cert.der().clone(), self.cert_der.clone()],
            signing_key,
        )))
    }
}

fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}
