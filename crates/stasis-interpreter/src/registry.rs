//! The contexts of the service: by id, in creation order, and the default context of
//! each language (what a run with `language` and no `context_id` uses, created on first
//! use; Python's at start-up).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::context::{Context, ContextInfo, Deps};
use crate::ids::uuid4;
use crate::kernel::KernelError;
use crate::language::Language;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Language {language} is not available in this sandbox (kernels: {available})")]
    UnknownLanguage { language: String, available: String },
    #[error("cwd {0}: {1}")]
    BadCwd(String, String),
    #[error("Context {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

pub struct Registry {
    deps: Arc<Deps>,
    default_cwd: PathBuf,
    /// In creation order: `GET /contexts` lists them so (the SDKs' tests take the last).
    contexts: Mutex<Vec<Arc<Context>>>,
    /// Per language, the id of its default context; the async lock makes concurrent
    /// first runs of a language share one new context.
    defaults: Mutex<HashMap<Language, Arc<tokio::sync::Mutex<Option<String>>>>>,
}

impl Registry {
    pub fn new(deps: Deps, default_cwd: PathBuf) -> Self {
        Registry { deps: Arc::new(deps), default_cwd, contexts: Mutex::default(), defaults: Mutex::default() }
    }

    /// Refuse a language no kernelspec runs.
    pub fn check_language(&self, language: &Language) -> Result<(), RegistryError> {
        if self.deps.spec_for(language).is_some() {
            return Ok(());
        }
        Err(RegistryError::UnknownLanguage {
            language: language.to_string(),
            available: self.deps.specs.names().join(", "),
        })
    }

    /// A new context with a started kernel.
    pub async fn create(&self, language: Language, cwd: Option<&str>) -> Result<Arc<Context>, RegistryError> {
        self.check_language(&language)?;
        let cwd = match cwd.filter(|c| !c.is_empty()) {
            Some(c) => PathBuf::from(c),
            None => self.default_cwd.clone(),
        };
        check_cwd(&cwd)?;
        let ctx = Context::start(uuid4(), language, cwd, self.deps.clone()).await?;
        tracing::info!(context = %ctx.id, language = %ctx.language, cwd = %ctx.cwd.display(), "context created");
        self.contexts.lock().unwrap().push(ctx.clone());
        Ok(ctx)
    }

    pub fn get(&self, id: &str) -> Result<Arc<Context>, RegistryError> {
        let all = self.contexts.lock().unwrap();
        all.iter().find(|c| c.id == id).cloned().ok_or_else(|| RegistryError::NotFound(id.to_string()))
    }

    pub fn list(&self) -> Vec<ContextInfo> {
        self.contexts.lock().unwrap().iter().map(|c| c.info()).collect()
    }

    /// The default context of `language`, created (in the default cwd) if there is none
    /// or it was removed.
    pub async fn default_context(&self, language: Language) -> Result<Arc<Context>, RegistryError> {
        self.check_language(&language)?;
        let slot = self.defaults.lock().unwrap().entry(language.clone()).or_default().clone();
        let mut id = slot.lock().await;
        if let Some(ctx) = id.as_deref().and_then(|i| self.get(i).ok()) {
            return Ok(ctx);
        }
        let ctx = self.create(language, None).await?;
        *id = Some(ctx.id.clone());
        Ok(ctx)
    }

    /// Remove a context and kill its kernel.
    pub fn remove(&self, id: &str) -> Result<(), RegistryError> {
        let ctx = {
            let mut all = self.contexts.lock().unwrap();
            let at = all.iter().position(|c| c.id == id).ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
            all.remove(at)
        };
        ctx.shut_down();
        tracing::info!(context = %id, "context removed");
        Ok(())
    }

    /// Kill every kernel (the service is stopping).
    pub async fn shutdown(&self) {
        let all = std::mem::take(&mut *self.contexts.lock().unwrap());
        for ctx in all {
            ctx.shut_down();
        }
    }
}

fn check_cwd(cwd: &Path) -> Result<(), RegistryError> {
    let bad = |why: &str| RegistryError::BadCwd(cwd.display().to_string(), why.to_string());
    if !cwd.is_absolute() {
        return Err(bad("must be an absolute path"));
    }
    match std::fs::metadata(cwd) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(bad("not a directory")),
        Err(e) => Err(bad(&e.to_string())),
    }
}
