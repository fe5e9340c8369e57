//! The TLS client configuration of intercepted connections' upstream side: verified
//! against the host's roots (`rustls-native-certs`: the system bundle, as curl on the
//! host would) and any `stasis serve --egress-extra-root FILE` (PEM; tests use it for a
//! private CA). Only HTTP/1.1 is offered, since that is what the relay speaks.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub fn client_config(extra_roots: &[PathBuf]) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::warn!("egress: no root certificates found on the host; intercepted HTTPS cannot be verified");
    }
    for path in extra_roots {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|i| i.collect::<Result<_, _>>())
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("read --egress-extra-root {}", path.display()))?;
        if certs.is_empty() {
            anyhow::bail!("--egress-extra-root {}: no certificate in it", path.display());
        }
        for c in certs {
            roots.add(c).with_context(|| format!("--egress-extra-root {}", path.display()))?;
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
