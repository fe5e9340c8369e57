//! Optional TLS for the API and the sandbox hosts: a local CA (made once by
//! `stasis tls init`, trusted by clients with e.g. `NODE_EXTRA_CA_CERTS`) signs, on first
//! use, a certificate for the exact name each client asks for (`{port}-{id}.{domain}` or
//! `{domain}`), so `https://{port}-{id}.{domain}` works. Exact names rather than one
//! wildcard: clients refuse `*.localhost` (a wildcard over a top-level name).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
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

fn ca_params() -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, "Stasis local CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

/// Makes the local CA if there is none (idempotent).
pub fn init(dir: &Path) -> Result<TlsFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let f = files(dir);
    if f.ca_cert.exists() && f.ca_key.exists() {
        return Ok(f);
    }
    let key = KeyPair::generate().context("generate the CA key")?;
    let ca = ca_params()?.self_signed(&key)?;
    write_private(&f.ca_key, &key.serialize_pem())?;
    std::fs::write(&f.ca_cert, ca.pem())?;
    Ok(f)
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
    let ca_cert = ca_params()?.self_signed(&ca_key)?;
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

/// Serves `app` over TLS on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router, cfg: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .http1_only()
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}
