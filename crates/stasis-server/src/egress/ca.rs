//! The sandbox egress CA: the certificate authority sandboxes trust (the runtime puts it
//! in their trust store) and that signs, for a connection a network rule matches, a leaf
//! for the name the sandbox asked for, so the proxy can read the request and set the
//! rule's headers.
//!
//! Its own, per server: `DATA/tls/egress-ca.pem` and `egress-ca.key` (0600, made on
//! first use, exclusively). Unlike the local CA of `tls.rs` it is not name-constrained,
//! since it must sign any domain a rule names; what bounds it is that only sandboxes
//! trust it and its key never leaves the host's data dir (root only). Leaves are cached
//! per name.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The CA's subject, which sandboxes see as the issuer of intercepted connections.
const SUBJECT: &str = "Stasis sandbox egress CA";
/// Leaves kept; the cache starts over past it.
const MAX_CACHED: usize = 10_000;

pub struct EgressCa {
    cert_path: PathBuf,
    pem: String,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
    ca_der: CertificateDer<'static>,
    cache: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for EgressCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressCa").field("cert", &self.cert_path).finish_non_exhaustive()
    }
}

fn params() -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, SUBJECT);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

impl EgressCa {
    /// The CA in `dir` (`egress-ca.pem`, `egress-ca.key`), made if there is none.
    pub fn load_or_make(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let (cert_path, key_path) = (dir.join("egress-ca.pem"), dir.join("egress-ca.key"));
        let key = match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&key_path) {
            Ok(mut f) => {
                let key = KeyPair::generate().context("generate the egress CA key")?;
                f.write_all(key.serialize_pem().as_bytes()).and_then(|_| f.sync_all())?;
                let cert = params()?.self_signed(&key)?;
                let tmp = cert_path.with_extension("pem.tmp");
                std::fs::write(&tmp, cert.pem())?;
                std::fs::rename(&tmp, &cert_path)?;
                key
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let pem = std::fs::read_to_string(&key_path).with_context(|| format!("read {}", key_path.display()))?;
                KeyPair::from_pem(&pem).context("read the egress CA key")?
            }
            Err(e) => return Err(e).with_context(|| format!("create {}", key_path.display())),
        };
        let pem = std::fs::read_to_string(&cert_path).with_context(|| format!("read {}", cert_path.display()))?;
        let ca_der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("read {}: {e:?}", cert_path.display()))?;
        // rcgen signs leaves with a certificate object of the same subject and key; the
        // chain sent is the stored one.
        let ca_cert = params()?.self_signed(&key)?;
        Ok(Self { cert_path, pem, ca_cert, ca_key: key, ca_der, cache: Mutex::default() })
    }

    /// The CA certificate (PEM), for the sandboxes' trust store.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A certificate and key for `name`, signed by this CA (cached).
    pub fn leaf(&self, name: &str) -> Result<Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        if let Some(c) = self.cache.lock().unwrap().get(&name) {
            return Ok(c.clone());
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.clone()])?;
        params.distinguished_name.push(DnType::CommonName, name.as_str());
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key)?;
        let der_key = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&der_key)?;
        let leaf = Arc::new(CertifiedKey::new(vec![cert.der().clone(), self.ca_der.clone()], signing));
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(name, leaf.clone());
        Ok(leaf)
    }

    /// A TLS server configuration presenting the leaf for `name` (HTTP/1.1 only: the
    /// relay speaks it).
    pub fn server_config(&self, name: &str) -> Result<Arc<rustls::ServerConfig>> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(self.leaf(name)?)));
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use rustls_pki_types::pem::PemObject;

    use super::*;

    /// A TLS handshake in memory between a client trusting `ca_pem` and `server`.
    fn handshake(ca_pem: &str, server: Arc<rustls::ServerConfig>, name: &str) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = rustls::ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        panic!("handshake did not finish")
    }

    #[test]
    fn a_sandbox_trusting_the_ca_accepts_its_leaf_for_that_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = EgressCa::load_or_make(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join("egress-ca.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        handshake(ca.pem(), ca.server_config("api.example.com").unwrap(), "api.example.com").unwrap();
        assert!(Arc::ptr_eq(&ca.leaf("API.example.com").unwrap(), &ca.leaf("api.example.com").unwrap()), "cached");
        let e = handshake(ca.pem(), ca.server_config("api.example.com").unwrap(), "other.example.com").unwrap_err();
        assert!(format!("{e:?}").contains("NotValidForName"), "{e:?}");
        // The same CA after a restart: leaves issued then are trusted by sandboxes made before.
        let again = EgressCa::load_or_make(dir.path()).unwrap();
        assert_eq!(again.pem(), ca.pem());
        handshake(ca.pem(), again.server_config("x.example.org").unwrap(), "x.example.org").unwrap();
        // Another server's CA is not trusted.
        let other = tempfile::tempdir().unwrap();
        let stranger = EgressCa::load_or_make(other.path()).unwrap();
        assert!(handshake(ca.pem(), stranger.server_config("api.example.com").unwrap(), "api.example.com").is_err());
    }
}
