//! What a build is asked to do: the SDKs' template (`TemplateBuildStartV2`: `fromImage` /
//! `fromTemplate`, `steps`, `startCmd`, `readyCmd`, `force`) parsed once into typed steps,
//! and the cache key of each step.
//!
//! The SDKs encode a step as `{type, args, force, filesHash}` with positional args
//! (npm `e2b` 2.51 and PyPI `e2b` 2.63, `src/template/index.ts` / `template/main.py`):
//! `RUN [cmd, user?]`, `COPY [src, dest, user, mode]` (mode octal, `""` when not set),
//! `ENV [k1, v1, k2, v2...]`, `WORKDIR [dir]`, `USER [user]`. `force` is set on every step
//! from the first `skipCache()` on, and on the whole template by the build option
//! `skipCache`. A template without a base says `fromImage: "e2bdev/base"` (E2B's base
//! image), which is Stasis's `base` template.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The template as the SDKs send it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateWire {
    pub from_image: Option<String>,
    pub from_template: Option<String>,
    pub from_image_registry: Option<serde_json::Value>,
    #[serde(default)]
    pub steps: Vec<StepWire>,
    pub start_cmd: Option<String>,
    pub ready_cmd: Option<String>,
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepWire {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub force: Option<bool>,
    pub files_hash: Option<String>,
}

/// Where a build starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    Template(String),
    /// An OCI image (`image.rs` reads the reference), with registry credentials.
    Image(String, Option<super::image::Credentials>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Run { cmd: String, user: Option<String> },
    Copy { src: String, dest: String, user: Option<String>, mode: Option<u32>, files_hash: String },
    Env(Vec<(String, String)>),
    Workdir(String),
    User(String),
}

#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub from: From,
    /// Each step with whether it must run even when cached.
    pub steps: Vec<(Step, bool)>,
    pub start_cmd: Option<String>,
    pub ready_cmd: Option<String>,
}

/// E2B's default base image, and what it means here.
const E2B_BASE_IMAGES: [&str; 2] = ["e2bdev/base", "e2bdev/base:latest"];

impl BuildSpec {
    pub fn parse(t: TemplateWire) -> Result<Self, String> {
        let from = match (t.from_template, t.from_image) {
            (Some(name), _) => From::Template(name),
            (None, Some(img)) if E2B_BASE_IMAGES.contains(&img.as_str()) => From::Template("base".into()),
            (None, Some(img)) => From::Image(img, super::image::credentials(t.from_image_registry.as_ref())?),
            (None, None) => From::Template("base".into()),
        };
        let mut steps = Vec::with_capacity(t.steps.len());
        for (i, s) in t.steps.into_iter().enumerate() {
            let force = t.force || s.force.unwrap_or(false);
            steps.push((Step::parse(s).map_err(|e| format!("step {}: {e}", i + 1))?, force));
        }
        let start_cmd = t.start_cmd.filter(|c| !c.trim().is_empty());
        let ready_cmd = t.ready_cmd.filter(|c| !c.trim().is_empty());
        Ok(Self { from, steps, start_cmd, ready_cmd })
    }
}

fn opt(s: Option<&String>) -> Option<String> {
    s.filter(|v| !v.is_empty()).cloned()
}

impl Step {
    fn parse(s: StepWire) -> Result<Self, String> {
        let a = &s.args;
        let need = |n: usize| {
            if a.len() < n {
                Err(format!("{} needs {n} argument(s), got {}", s.kind, a.len()))
            } else {
                Ok(())
            }
        };
        match s.kind.as_str() {
            "RUN" => {
                need(1)?;
                Ok(Step::Run { cmd: a[0].clone(), user: opt(a.get(1)) })
            }
            "COPY" => {
                need(2)?;
                let mode = match opt(a.get(3)) {
                    Some(m) => Some(u32::from_str_radix(&m, 8).map_err(|_| format!("bad mode {m:?}"))?),
                    None => None,
                };
                let files_hash = s.files_hash.clone().filter(|h| valid_hash(h)).ok_or("COPY needs a filesHash")?;
                Ok(Step::Copy { src: a[0].clone(), dest: a[1].clone(), user: opt(a.get(2)), mode, files_hash })
            }
            "ENV" => {
                if !a.len().is_multiple_of(2) {
                    return Err("ENV needs key/value pairs".into());
                }
                Ok(Step::Env(a.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect()))
            }
            "WORKDIR" => {
                need(1)?;
                Ok(Step::Workdir(a[0].clone()))
            }
            "USER" => {
                need(1)?;
                Ok(Step::User(a[0].clone()))
            }
            other => Err(format!("unknown step type {other:?}")),
        }
    }

    /// One line for the build log.
    pub fn describe(&self) -> String {
        match self {
            Step::Run { cmd, user } => {
                format!("RUN {cmd}{}", user.as_ref().map(|u| format!(" (as {u})")).unwrap_or_default())
            }
            Step::Copy { src, dest, .. } => format!("COPY {src} {dest}"),
            Step::Env(kv) => {
                format!("ENV {}", kv.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
            }
            Step::Workdir(d) => format!("WORKDIR {d}"),
            Step::User(u) => format!("USER {u}"),
        }
    }

    /// Whether the step changes files (and so makes a layer); the others change only
    /// what the following steps run with.
    pub fn makes_layer(&self) -> bool {
        matches!(self, Step::Run { .. } | Step::Copy { .. } | Step::Workdir(_))
    }

    fn key_bytes(&self) -> Vec<u8> {
        // Debug output of the typed step: every field, unambiguous (strings are quoted).
        format!("{self:?}").into_bytes()
    }
}

/// File hashes name uploads on disk: hex only.
pub fn valid_hash(h: &str) -> bool {
    !h.is_empty() && h.len() <= 128 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The cache key of what a build has made so far: the key of its base, then each step
/// chained onto it. A step's layer is `lyr` + its key: the same base and the same steps
/// (with the same files) make the same layer, whichever template asks. A forced step
/// chains a nonce in, so it and every step after it are made anew.
pub fn chain(prev: &str, step: &Step, nonce: Option<&str>) -> String {
    let mut h = Sha256::new();
    for part in [prev.as_bytes(), &step.key_bytes(), nonce.unwrap_or("").as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// The key a build starts from: the files of its base (layer paths are content-named
/// or versioned, so a rebuilt base is another key).
pub fn base_key(lowers: &[String]) -> String {
    let mut h = Sha256::new();
    for l in lowers {
        h.update((l.len() as u64).to_le_bytes());
        h.update(l.as_bytes());
    }
    hex::encode(h.finalize())
}

pub fn layer_id(key: &str) -> String {
    format!("lyr{}", &key[..40])
}

/// `s` quoted for `sh`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(json: serde_json::Value) -> TemplateWire {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn parses_the_sdks_steps() {
        // As npm e2b 2.51 serializes Template().fromTemplate('base').copy(..).runCmd(..)...
        let t = wire(serde_json::json!({
            "fromTemplate": "base", "startCmd": "python3 -m http.server 8000",
            "readyCmd": "[ -n \"$(ss -Htuln sport = :8000)\" ]", "force": false,
            "steps": [
                {"type": "COPY", "args": ["app.txt", "/app/", "", "0644"], "force": false, "filesHash": "ab12"},
                {"type": "RUN", "args": ["echo hi", "user"], "force": false},
                {"type": "ENV", "args": ["A", "1", "B", "2"], "force": true},
                {"type": "WORKDIR", "args": ["/app"], "force": true},
                {"type": "USER", "args": ["user"], "force": true}
            ]
        }));
        let s = BuildSpec::parse(t).unwrap();
        assert_eq!(s.from, From::Template("base".into()));
        assert_eq!(
            s.steps[0],
            (
                Step::Copy {
                    src: "app.txt".into(),
                    dest: "/app/".into(),
                    user: None,
                    mode: Some(0o644),
                    files_hash: "ab12".into()
                },
                false
            )
        );
        assert_eq!(s.steps[1].0, Step::Run { cmd: "echo hi".into(), user: Some("user".into()) });
        assert_eq!(s.steps[2], (Step::Env(vec![("A".into(), "1".into()), ("B".into(), "2".into())]), true));
        assert!(s.ready_cmd.is_some() && s.start_cmd.is_some());
    }

    #[test]
    fn e2b_base_image_is_the_base_template_and_skip_cache_forces_all() {
        let s = BuildSpec::parse(wire(serde_json::json!({"fromImage": "e2bdev/base", "force": true,
            "steps": [{"type": "RUN", "args": ["true"], "force": false}]})))
        .unwrap();
        assert_eq!(s.from, From::Template("base".into()));
        assert!(s.steps[0].1);
        let img = BuildSpec::parse(wire(serde_json::json!({"fromImage": "localhost:5000/app:1"}))).unwrap();
        assert_eq!(img.from, From::Image("localhost:5000/app:1".into(), None));
        let creds = BuildSpec::parse(wire(serde_json::json!({"fromImage": "localhost:5000/app:1",
            "fromImageRegistry": {"type": "registry", "username": "u", "password": "p"}})))
        .unwrap();
        assert!(matches!(creds.from, From::Image(_, Some(ref c)) if c.username == "u" && c.password == "p"));
    }

    #[test]
    fn bad_steps_say_which() {
        let e = BuildSpec::parse(wire(serde_json::json!({"steps": [
            {"type": "RUN", "args": ["true"]}, {"type": "ENV", "args": ["A"]}]})))
        .unwrap_err();
        assert!(e.starts_with("step 2:"), "{e}");
        assert!(BuildSpec::parse(wire(serde_json::json!({"steps": [{"type": "COPY", "args": ["a", "b"]}]}))).is_err());
        assert!(BuildSpec::parse(wire(serde_json::json!({"steps": [{"type": "FROB", "args": []}]}))).is_err());
    }

    #[test]
    fn keys_chain_and_a_nonce_makes_a_new_layer() {
        let base = base_key(&["/t/base/rootfs".into()]);
        let run = Step::Run { cmd: "make".into(), user: None };
        let k1 = chain(&base, &run, None);
        assert_eq!(k1, chain(&base, &run, None), "same inputs, same layer");
        assert_ne!(k1, chain(&base_key(&["/t/other".into()]), &run, None), "another base");
        assert_ne!(k1, chain(&base, &Step::Run { cmd: "make".into(), user: Some("user".into()) }, None));
        assert_ne!(k1, chain(&base, &run, Some("n1")), "forced");
        assert!(layer_id(&k1).starts_with("lyr") && layer_id(&k1).len() == 43);
    }

    #[test]
    fn quotes_for_sh() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
