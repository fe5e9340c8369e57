//! Optional TLS for the API and the sandbox hosts: a local CA (made once by
//! `stasis tls init`, trusted by clients with e.g. `NODE_EXTRA_CA_CERTS`) signs, on first
//! use, a certificate for the exact name each client asks for (`{port}-{id}.{domain}` or
//! `{domain}`), so `https://{port}-{id}.{domain}` works. Exact names rather than one
//! wildcard: clients refuse `*.localhost` (a wildcard over a top-level name).
//!
//! The CA is name-constrained (RFC 5280 4.2.1.10) to the sandbox domain and to no IP
//! address: a client that trusts it trusts it for `{domain}` and its subdomains only, so
//! its key, if it ever leaked from the host, could not impersonate any other site to
//! those clients. A CA made before constraints (or for another domain) is reported.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DnType, GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose,
    NameConstraints,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
}

pub fn files(dir: &Path) -> TlsFiles {
    TlsFiles { ca_cert: dir.join("ca.pem"), ca_key: dir.join("ca.key") }
}

fn write_private(path: &Path, data: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(data.as_bytes())?;
    Ok(())
}

fn ca_params(domain: &str) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    // The same subject as before constraints: leaves name it as their issuer, and clients
    // match it against the CA they trust (an older one included).
    p.distinguished_name.push(DnType::CommonName, "Stasis local CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName(domain.to_string())],
        excluded_subtrees: vec![
            GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
            GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
        ],
    });
    Ok(p)
}

/// OID 2.5.29.30 (name constraints) as it appears in DER.
const NAME_CONSTRAINTS_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x1e];

/// Whether the CA certificate in `f` is constrained to `domain` (the DER holds the name
/// constraints extension and the domain as a dNSName subtree).
fn constrained_to(f: &TlsFiles, domain: &str) -> bool {
    let Ok(der) = CertificateDer::from_pem_file(&f.ca_cert) else { return false };
    let has = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
    let mut subtree = vec![0x82, domain.len() as u8];
    subtree.extend_from_slice(domain.as_bytes());
    has(&NAME_CONSTRAINTS_OID) && domain.len() < 128 && has(&subtree)
}

/// Makes the local CA for `domain` if there is none (idempotent). An existing CA that is
/// not constrained to `domain` is kept (replacing it breaks every client that trusts
/// it), with a warning returned, unless `renew` asks for a new one.
pub fn init(dir: &Path, domain: &str, renew: bool) -> Result<(TlsFiles, Option<String>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let f = files(dir);
    if f.ca_cert.exists() && f.ca_key.exists() {
        if constrained_to(&f, domain) {
            return Ok((f, None));
        }
        if !renew {
            let warning = format!(
                "{} is not name-constrained to {domain:?} (made by an older Stasis or for another domain): clients that trust it trust it for every site; `stasis tls init --renew` replaces it (clients must then trust the new one)",
                f.ca_cert.display()
            );
            return Ok((f, Some(warning)));
        }
    }
    let key = KeyPair::generate().context("generate the CA key")?;
    let ca = ca_params(domain)?.self_signed(&key)?;
    write_private(&f.ca_key, &key.serialize_pem())?;
    std::fs::write(&f.ca_cert, ca.pem())?;
    Ok((f, None))
}

/// Issues and caches a certificate per requested name under the configured domain.
struct OnDemand {
    domain: String,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
    chain_ca: CertificateDer<'static>,
    cache: std::sync::Mutex<std::collections::HashMap<String, Arc<rustls::sign::CertifiedKey>>>,
}

impl OnDemand {
    fn issue(&self, name: &str) -> Result<Arc<rustls::sign::CertifiedKey>> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.to_string()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key)?;
        let der_key = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&der_key)?;
        Ok(Arc::new(rustls::sign::CertifiedKey::new(vec![cert.der().clone(), self.chain_ca.clone()], signing)))
    }
}

impl std::fmt::Debug for OnDemand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDemand").field("domain", &self.domain).finish_non_exhaustive()
    }
}

impl rustls::server::ResolvesServerCert for OnDemand {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let name = hello.server_name().unwrap_or(&self.domain).to_ascii_lowercase();
        // Only names Stasis answers for: the domain and its direct sandbox hosts.
        let ok = name == self.domain
            || name.strip_suffix(&self.domain).is_some_and(|p| p.ends_with('.') && !p[..p.len() - 1].contains('.'));
        if !ok {
            return None;
        }
        let mut cache = self.cache.lock().unwrap();
        if let Some(c) = cache.get(&name) {
            return Some(c.clone());
        }
        let c = self.issue(&name).ok()?;
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(name, c.clone());
        Some(c)
    }
}

/// The server side configuration: certificates issued by the local CA in `dir`.
pub fn server_config(dir: &Path, domain: &str) -> Result<Arc<rustls::ServerConfig>> {
    let f = files(dir);
    let key_pem = std::fs::read_to_string(&f.ca_key)
        .with_context(|| format!("read {} (run `stasis tls init`)", f.ca_key.display()))?;
    let ca_key = KeyPair::from_pem(&key_pem).context("read the CA key")?;
    if !constrained_to(&f, domain) {
        tracing::warn!(
            "{} is not name-constrained to {domain:?}: clients trusting it trust it for every name; see `stasis tls init`",
            f.ca_cert.display()
        );
    }
    let ca_cert = ca_params(domain)?.self_signed(&ca_key)?;
    let chain_ca =
        CertificateDer::from_pem_file(&f.ca_cert).with_context(|| format!("read {}", f.ca_cert.display()))?;
    let resolver =
        OnDemand { domain: domain.to_ascii_lowercase(), ca_cert, ca_key, chain_ca, cache: Default::default() };
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::{ServerName, UnixTime};

    /// A certificate for `name` signed with the CA's key, as someone holding a leaked key
    /// would make one.
    fn forged(dir: &Path, name: &str) -> CertificateDer<'static> {
        let f = files(dir);
        let ca_key = KeyPair::from_pem(&std::fs::read_to_string(&f.ca_key).unwrap()).unwrap();
        let ca = ca_params("localhost").unwrap().self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap().der().clone()
    }

    #[test]
    fn the_ca_signs_only_for_the_sandbox_domain() {
        let d = tempfile::tempdir().unwrap();
        let (f, warning) = init(d.path(), "localhost", false).unwrap();
        assert!(warning.is_none());
        assert!(constrained_to(&f, "localhost") && !constrained_to(&f, "example.com"));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(&f.ca_cert).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
        let check = |cert_name: &str, server: &str| {
            let server = ServerName::try_from(server.to_string()).unwrap();
            verifier.verify_server_cert(&forged(d.path(), cert_name), &[], &server, &[], UnixTime::now())
        };
        check("8000-abc.localhost", "8000-abc.localhost").unwrap();
        check("localhost", "localhost").unwrap();
        for name in ["example.com", "accounts.google.com", "localhost.example.com"] {
            let e = check(name, name).unwrap_err();
            assert!(format!("{e:?}").contains("NameConstraint"), "{name}: {e:?}");
        }
        let e = check("127.0.0.1", "127.0.0.1").unwrap_err();
        assert!(format!("{e:?}").contains("NameConstraint"), "{e:?}");
        // An existing CA for another domain is kept with a warning, or renewed on request.
        let (_, warning) = init(d.path(), "sandbox.example", false).unwrap();
        assert!(warning.unwrap().contains("not name-constrained"));
        let (f, warning) = init(d.path(), "sandbox.example", true).unwrap();
        assert!(warning.is_none() && constrained_to(&f, "sandbox.example"));
    }
}
