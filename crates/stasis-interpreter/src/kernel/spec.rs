//! Kernelspecs: which command starts each kernel.
//!
//! Jupyter's format: a directory per kernel named after it, holding `kernel.json` with
//! `argv` (`{connection_file}` and `{resource_dir}` are substituted), `display_name`,
//! `language`, optional `env` (added to the service's environment) and `interrupt_mode`
//! (`signal`: SIGINT to the kernel's process group; `message`: an `interrupt_request` on
//! the control channel, which Deno needs: SIGINT kills it; unset: the language's
//! default).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterruptMode {
    Signal,
    Message,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KernelSpec {
    pub argv: Vec<String>,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub language: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Unset: the language's default (`crate::context::Deps::launch`).
    #[serde(default)]
    pub interrupt_mode: Option<InterruptMode>,
    /// The directory the spec was read from.
    #[serde(skip)]
    pub resource_dir: PathBuf,
}

impl KernelSpec {
    /// `argv` with the placeholders filled in.
    pub fn command(&self, connection_file: &Path) -> Vec<String> {
        self.argv
            .iter()
            .map(|a| {
                a.replace("{connection_file}", &connection_file.to_string_lossy())
                    .replace("{resource_dir}", &self.resource_dir.to_string_lossy())
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Invalid(PathBuf, String),
    #[error("no kernelspecs in {0}")]
    Empty(PathBuf),
}

/// The kernelspecs of a directory, by name.
#[derive(Debug, Clone, Default)]
pub struct KernelSpecs {
    specs: HashMap<String, KernelSpec>,
}

impl KernelSpecs {
    /// Every `DIR/NAME/kernel.json`. A spec that does not parse fails the load: a
    /// template with a broken kernel should not build.
    pub fn load(dir: &Path) -> Result<Self, SpecError> {
        let entries = std::fs::read_dir(dir).map_err(|e| SpecError::Io(dir.to_path_buf(), e))?;
        let mut specs = HashMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| SpecError::Io(dir.to_path_buf(), e))?;
            let file = entry.path().join("kernel.json");
            if !file.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&file).map_err(|e| SpecError::Io(file.clone(), e))?;
            let mut spec: KernelSpec =
                serde_json::from_str(&text).map_err(|e| SpecError::Invalid(file.clone(), e.to_string()))?;
            if spec.argv.is_empty() {
                return Err(SpecError::Invalid(file, "argv is empty".into()));
            }
            spec.resource_dir = entry.path();
            specs.insert(entry.file_name().to_string_lossy().into_owned(), spec);
        }
        if specs.is_empty() {
            return Err(SpecError::Empty(dir.to_path_buf()));
        }
        Ok(KernelSpecs { specs })
    }

    pub fn get(&self, name: &str) -> Option<&KernelSpec> {
        self.specs.get(name)
    }

    /// Names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.specs.keys().cloned().collect();
        n.sort();
        n
    }

    #[cfg(test)]
    pub fn from_map(specs: HashMap<String, KernelSpec>) -> Self {
        KernelSpecs { specs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_specs_and_fills_placeholders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("javascript")).unwrap();
        std::fs::write(
            dir.path().join("javascript/kernel.json"),
            r#"{"argv":["deno","jupyter","--kernel","--conn","{connection_file}"],"display_name":"JS",
                "language":"javascript","interrupt_mode":"message","env":{"NO_COLOR":"1"}}"#,
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("not-a-kernel")).unwrap();
        let specs = KernelSpecs::load(dir.path()).unwrap();
        assert_eq!(specs.names(), vec!["javascript"]);
        let js = specs.get("javascript").unwrap();
        assert_eq!(js.interrupt_mode, Some(InterruptMode::Message));
        assert_eq!(js.env["NO_COLOR"], "1");
        assert_eq!(js.command(Path::new("/run/c.json"))[4], "/run/c.json");
    }

    #[test]
    fn broken_or_empty_dirs_fail() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(KernelSpecs::load(dir.path()), Err(SpecError::Empty(_))));
        std::fs::create_dir(dir.path().join("python3")).unwrap();
        std::fs::write(dir.path().join("python3/kernel.json"), r#"{"argv":[]}"#).unwrap();
        assert!(matches!(KernelSpecs::load(dir.path()), Err(SpecError::Invalid(..))));
        assert!(KernelSpecs::load(&dir.path().join("missing")).is_err());
    }
}
