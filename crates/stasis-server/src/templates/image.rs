//! What `fromImage` names, as the runtime's [`ImageSource`]: a registry image
//! (`python:3.12`, `127.0.0.1:5000/app:1`, `host/name@sha256:...`) or an OCI image on
//! disk (`oci-archive:/PATH.tar`, `oci:/DIR[:TAG]`), with the SDK's registry credentials
//! (`fromImageRegistry: {type: "registry", username, password}`).
//!
//! TLS: a registry is reached over verified HTTPS, except a loopback one (`localhost`,
//! `127.0.0.0/8`, `[::1]`) or one named in `insecure` (`stasis serve
//! --insecure-registry HOST[:PORT]`), which may also speak plain HTTP.
//!
//! On-disk images: only under `DATA/images/import/` (an API caller must not make the
//! server read any host file into a template); `stasis template build` puts an archive
//! named on its command line there when it runs on the server's host.

use std::path::Path;

use stasis_runtime::{ImageSource, RegistryAuth};

/// Registry credentials from the SDKs (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}:***)", self.username)
    }
}

/// `fromImageRegistry` as the SDKs send it: `{type: "registry", username, password}`;
/// AWS and GCP registries (`type: "aws" | "gcp"`) need their clouds' token exchanges.
pub fn credentials(registry: Option<&serde_json::Value>) -> Result<Option<Credentials>, String> {
    let Some(r) = registry.filter(|r| !r.is_null()) else { return Ok(None) };
    let field = |k: &str| r.get(k).and_then(|v| v.as_str()).map(str::to_string);
    match field("type").as_deref() {
        Some("registry") | None => match (field("username"), field("password")) {
            (Some(username), Some(password)) if !username.is_empty() => Ok(Some(Credentials { username, password })),
            _ => Err("fromImageRegistry needs a username and a password".into()),
        },
        Some(other) => Err(format!("fromImageRegistry type {other:?} is not supported here; use type \"registry\" with a username and password")),
    }
}

/// The runtime's source for image `image`, or why it is not one.
pub fn source(
    image: &str,
    auth: Option<&Credentials>,
    insecure: &[String],
    import_dir: &Path,
) -> Result<ImageSource, String> {
    let bad = |why: &str| format!("bad image reference {image:?}: {why}");
    if image.is_empty() || image.len() > 512 {
        return Err(bad("empty or too long"));
    }
    for (prefix, transport) in [("oci-archive:", "oci-archive"), ("oci:", "oci")] {
        if let Some(rest) = image.strip_prefix(prefix) {
            if auth.is_some() {
                return Err(bad("credentials are for registries, not files"));
            }
            let path = rest.split(':').next().unwrap_or_default();
            let p = Path::new(path);
            if !p.is_absolute() || p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                return Err(bad("an on-disk image needs an absolute path"));
            }
            if !p.starts_with(import_dir) {
                return Err(bad(&format!("on-disk images are read only from {}", import_dir.display())));
            }
            if !p.exists() {
                return Err(bad(&format!("{path} does not exist")));
            }
            return Ok(ImageSource { reference: format!("{transport}:{rest}"), auth: None, tls_verify: true });
        }
    }
    if image.contains("://") {
        return Err(bad("name an image as HOST[:PORT]/NAME[:TAG], without a scheme"));
    }
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"._-/:@[]".contains(&b);
    if image.starts_with(['-', '/', ':', '@']) || !image.bytes().all(ok) {
        return Err(bad("use letters, digits and . _ - / : @ (and [ ] around an IPv6 host)"));
    }
    let host = registry_host(image);
    let tls_verify = !(is_loopback(&host) || insecure.iter().any(|h| h.eq_ignore_ascii_case(&host)));
    let auth = auth.map(|c| RegistryAuth {
        registry: host.clone(),
        username: c.username.clone(),
        password: c.password.clone(),
    });
    Ok(ImageSource { reference: format!("docker://{image}"), auth, tls_verify })
}

/// The registry of a Docker reference: its first part when that looks like a host
/// (has a `.` or a `:`, or is `localhost`), else Docker Hub.
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.to_string(),
        _ => "docker.io".to_string(),
    }
}

fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(image: &str) -> Result<ImageSource, String> {
        source(image, None, &[], Path::new("/var/lib/stasis/images/import"))
    }

    #[test]
    fn registry_images_and_tls() {
        let s = src("127.0.0.1:5000/app:1").unwrap();
        assert_eq!((s.reference.as_str(), s.tls_verify), ("docker://127.0.0.1:5000/app:1", false));
        assert!(!src("localhost:5000/a").unwrap().tls_verify);
        assert!(!src("[::1]:5000/a").unwrap().tls_verify);
        let hub = src("python:3.12").unwrap();
        assert_eq!((hub.reference.as_str(), hub.tls_verify), ("docker://python:3.12", true));
        assert!(src("registry.example.com:5000/a").unwrap().tls_verify);
        let listed = source("reg.lan:5000/a", None, &["reg.lan:5000".into()], Path::new("/x")).unwrap();
        assert!(!listed.tls_verify);
        assert_eq!(registry_host("python:3.12"), "docker.io");
        assert_eq!(registry_host("library/python"), "docker.io");
        assert_eq!(registry_host("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000");
    }

    #[test]
    fn credentials_go_to_the_images_registry() {
        let c = credentials(Some(&serde_json::json!({"type": "registry", "username": "u", "password": "p"})))
            .unwrap()
            .unwrap();
        let s = source("127.0.0.1:5000/a:1", Some(&c), &[], Path::new("/x")).unwrap();
        assert_eq!(s.auth.unwrap().registry, "127.0.0.1:5000");
        assert!(!format!("{c:?}").contains('p'), "the password is never printed");
        assert!(credentials(Some(&serde_json::json!({"type": "aws"}))).unwrap_err().contains("aws"));
        assert!(credentials(Some(&serde_json::json!({"type": "registry", "username": "u"}))).is_err());
        assert_eq!(credentials(None).unwrap(), None);
    }

    #[test]
    fn bad_references_say_so() {
        for bad in ["", "Bad Ref", "-x", "http://h/a", "a;rm -rf /", "oci-archive:rel.tar", "oci:/etc:x"] {
            let e = src(bad).unwrap_err();
            assert!(e.starts_with("bad image reference"), "{bad}: {e}");
        }
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("img.tar"), b"").unwrap();
        let arch = format!("oci-archive:{}/img.tar", d.path().display());
        let s = source(&arch, None, &[], d.path()).unwrap();
        assert_eq!(s.reference, arch);
    }
}
