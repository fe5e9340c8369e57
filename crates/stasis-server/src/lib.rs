//! `stasis serve`: one daemon with the control API (E2B REST v1 + v2), the sandbox proxy
//! and the lifecycle scheduler, on one port.
//!
//! Requests naming a sandbox (`E2b-Sandbox-Id` / `Novita-Sandbox-Id` headers, or a Host
//! `{port}-{id}.{domain}`) go to the proxy; everything else is the control API.

pub mod api;
pub mod cluster;
pub mod dashboard;
pub mod egress;
pub mod ids;
pub mod lifecycle;
pub mod listen;
pub mod metrics;
pub mod ops;
pub mod proxy;
pub mod secrets;
pub mod templates;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use stasis_runtime::container::{ContainerConfig, ContainerRuntime};
use stasis_store::Store;

use api::AppState;
use lifecycle::Lifecycle;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub api_key: Option<String>,
    pub domain: String,
    pub agent_binary: PathBuf,
    /// Kill paused sandboxes older than this (default: keep until killed).
    pub paused_retention: Option<std::time::Duration>,
    /// On SIGTERM, pause every running sandbox; the next start resumes them.
    pub pause_on_shutdown: bool,
    /// The longest timeout a sandbox may ask for (create, connect, setTimeout); `None`: no
    /// limit.
    pub max_timeout: Option<std::time::Duration>,
    /// A bearer token that may read `/metrics` besides the API keys.
    pub metrics_token: Option<String>,
    /// Also serve over TLS here, with the certificate from `stasis tls init`.
    pub tls_listen: Option<SocketAddr>,
    /// The state database (`stasis_store::open::open`); `None`: SQLite in the data dir.
    pub database: Option<String>,
    /// Bytes of the data dir's filesystem creates, pauses and snapshots leave free.
    pub disk_reserve: u64,
    /// Where checkpoint and snapshot images are kept beyond this host; `None`: here only.
    pub object_store: Option<stasis_runtime::objstore::ObjectStoreConfig>,
    /// Connection cap and client deadlines of both listeners.
    pub limits: listen::Limits,
    /// Registries (`HOST[:PORT]`) template builds may reach without verified TLS
    /// (loopback registries always may).
    pub insecure_registries: Vec<String>,
    /// More roots (PEM files) the egress proxy verifies upstream certificates against,
    /// besides the host's (`--egress-extra-root`; tests use a private CA).
    pub egress_extra_roots: Vec<PathBuf>,
    /// How long proxied connections stay parked across a pause for sandboxes whose
    /// metadata does not say (`stasis_park_connections`); `None`: cut at pause.
    pub park_connections: Option<std::time::Duration>,
    /// This node: its id, advertised URL, lease, the cluster's secret
    /// (`cluster::ClusterConfig::single` on one machine).
    pub cluster: cluster::ClusterConfig,
}

/// Ids paused at shutdown, to resume at the next start. Written (durably) before the
/// pauses begin, so a crash during shutdown still resumes what was paused.
const RESUME_ON_START: &str = "resume-on-start.json";

/// Sends a request another node answers there (`cluster`), sandbox-addressed requests to
/// the proxy, the rest on to the control API.
async fn route(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(cluster) = &state.cluster {
        use cluster::auth::{origin, strip, Origin};
        match origin(req.headers(), cluster.config().secret.as_deref()) {
            Origin::Forged => {
                return api::ApiError::new(
                    axum::http::StatusCode::UNAUTHORIZED,
                    "a forwarded request without the cluster's secret",
                )
                .into_response()
            }
            // Answered here, whatever this node thinks of the owner: never bounced.
            Origin::Node(_) => strip(req.headers_mut()),
            Origin::Client if cluster.forwards() => {
                use cluster::routing::{with_create_body, Subject};
                let mut subject = cluster::routing::subject(&req, &state.domain);
                if subject == Subject::Create(None) {
                    // Its template may be a snapshot another node holds: the body says.
                    (req, subject) = match with_create_body(req).await {
                        Ok(read) => read,
                        Err(answer) => return answer,
                    };
                }
                match cluster.destination(&subject).await {
                    cluster::routing::Destination::Here => {}
                    cluster::routing::Destination::Node(node) => return cluster.forward(&node, req).await,
                    cluster::routing::Destination::Refused(status, message) => {
                        return api::ApiError::new(status, message).into_response()
                    }
                    cluster::routing::Destination::Nowhere => {
                        return api::ApiError::new(
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "no node takes new sandboxes: every node is draining or silent (stasis node ls)",
                        )
                        .into_response()
                    }
                }
            }
            Origin::Client => {}
        }
    }
    if req.method() == axum::http::Method::CONNECT {
        let by_authority = req.uri().authority().and_then(|a| proxy::target::from_host(a.as_str(), &state.domain));
        let target = match by_authority {
            Some(t) => Ok(Some(t)),
            None => proxy::target::resolve(req.headers(), &state.domain),
        };
        return match target {
            Ok(Some(target)) => proxy::tunnel(state, target, req).await,
            Err(e) => api::ApiError::bad_request(e.to_string()).into_response(),
            Ok(None) => {
                api::ApiError::bad_request("CONNECT needs a sandbox host {port}-{id}.{domain} or the sandbox headers")
                    .into_response()
            }
        };
    }
    match proxy::target::resolve(req.headers(), &state.domain) {
        Ok(Some(target)) => proxy::handle(state, target, req).await,
        Ok(None) => next.run(req).await,
        Err(e) => api::ApiError::bad_request(e.to_string()).into_response(),
    }
}

/// Makes sure a key exists: the given one, or a generated one printed once and kept in
/// `DATA/api-key` (mode 0600).
async fn ensure_api_key(store: &dyn Store, cfg: &ServeConfig) -> Result<()> {
    if let Some(key) = &cfg.api_key {
        match store.add_api_key("configured", key).await {
            Ok(_) | Err(stasis_store::StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(());
    }
    if store.count_api_keys().await? > 0 {
        tracing::info!("API key in {}", cfg.data_dir.join("api-key").display());
        return Ok(());
    }
    let key = stasis_store::generate_api_key().context("generate an API key")?;
    store.add_api_key("generated", &key).await?;
    let path = cfg.data_dir.join("api-key");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
        writeln!(f, "{key}")?;
    }
    // Shown once on a terminal; a service's stdout is a log, and a key in a log outlives
    // every rotation of it.
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        println!("stasis: generated API key (also in {}): {key}", path.display());
    } else {
        println!("stasis: generated an API key, in {} (root only)", path.display());
    }
    Ok(())
}

pub async fn build(cfg: &ServeConfig) -> Result<(axum::Router, Lifecycle, cluster::Cluster)> {
    cfg.cluster.validate().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("create {}", cfg.data_dir.display()))?;
    let store: Arc<dyn Store> = stasis_store::open::open(cfg.database.as_deref(), &cfg.data_dir.join("stasis.db"))
        .await
        .context("open the state database")?;
    // It holds every sandbox's tokens and env vars: root only, also when an older Stasis
    // made it world-readable (SQLite gives its -wal and -shm the database's mode).
    for f in ["stasis.db", "stasis.db-wal", "stasis.db-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(cfg.data_dir.join(f), std::fs::Permissions::from_mode(0o600));
    }
    ensure_api_key(store.as_ref(), cfg).await?;
    // The egress proxy: its CA (trusted by sandboxes with network.rules), the roots it
    // verifies destinations against, and the channel the runtime's listeners feed.
    let egress_ca = Arc::new(egress::ca::EgressCa::load_or_make(&cfg.data_dir.join("tls")).context("the egress CA")?);
    let upstream_tls = egress::upstream::client_config(&cfg.egress_extra_roots)?;
    let (egress_tx, egress_rx) = tokio::sync::mpsc::unbounded_channel();
    let runtime = ContainerRuntime::new(ContainerConfig {
        data_dir: cfg.data_dir.clone(),
        agent_binary: cfg.agent_binary.clone(),
        disk_reserve: cfg.disk_reserve,
        object_store: cfg.object_store.clone(),
        // A cluster with an object store: paused sandboxes resume on any node.
        share_layers: cfg.cluster.node_id.is_some() && cfg.object_store.is_some(),
        egress: Some(stasis_runtime::container::egress::EgressConfig {
            sink: egress_tx,
            ca_pem: egress_ca.pem().to_string(),
        }),
        disk_pool: ContainerConfig::default_disk_pool(),
        gateway_pool: ContainerConfig::default_gateway_pool(),
    })
    .context("start the container runtime")?;
    if let Some(o) = &cfg.object_store {
        tracing::info!("checkpoints and snapshots are kept in {}", o.display());
    }
    let runtime: Arc<dyn stasis_runtime::Runtime> = Arc::new(runtime);
    let templates = templates::Templates::new(runtime.clone(), &cfg.data_dir)
        .context("prepare template builds")?
        .with_insecure_registries(cfg.insecure_registries.clone());
    let lifecycle = Lifecycle::new(
        store,
        runtime,
        lifecycle::LifecycleConfig {
            paused_retention: cfg.paused_retention,
            park_connections: cfg.park_connections,
            defaults: lifecycle::SandboxDefaults {
                max_timeout_secs: cfg.max_timeout.map(|d| d.as_secs().max(1)),
                ..Default::default()
            },
            secrets: Some(secrets::Vault::new(cfg.data_dir.join("secrets.key"))),
            node_id: cfg.cluster.node_id.clone().unwrap_or_default(),
            share_layers: cfg.cluster.node_id.is_some() && cfg.object_store.is_some(),
            ..Default::default()
        },
    );
    // Before recovery, which reopens the listeners of running sandboxes.
    egress::spawn(egress::Proxy { lifecycle: lifecycle.clone(), ca: egress_ca, upstream_tls }, egress_rx);
    // Renewed before recovery: once the lease holds, no other node declares this one dead
    // under it, so what recovery takes up (lost sandboxes included) stays taken.
    let cluster = cluster::Cluster::new(cfg.cluster.clone(), lifecycle.clone());
    cluster.beat(true).await.context("register this node (first heartbeat)")?;
    lifecycle.reconcile().await.context("recover sandboxes after restart")?;
    templates.recover().await;
    resume_paused_at_shutdown(&lifecycle, cfg).await;
    let ops = ops::OpsConfig { data_dir: Some(cfg.data_dir.clone()), metrics_token: cfg.metrics_token.clone() };
    let state = AppState {
        lifecycle: lifecycle.clone(),
        templates,
        domain: cfg.domain.clone(),
        ops: Arc::new(ops),
        cluster: Some(cluster),
    };
    let cluster = state.cluster.clone().expect("made above");
    let app = app(state);
    Ok((app, lifecycle, cluster))
}

/// The whole HTTP surface: the operator's endpoints, the E2B API, and in front of both the
/// proxy for sandbox-addressed requests.
pub fn app(state: AppState) -> axum::Router {
    ops::router(state.clone())
        .merge(api::router(state.clone()))
        .layer(axum::middleware::from_fn_with_state(state, route))
}

async fn resume_paused_at_shutdown(lc: &Lifecycle, cfg: &ServeConfig) {
    let path = cfg.data_dir.join(RESUME_ON_START);
    let Ok(text) = std::fs::read_to_string(&path) else { return };
    let ids: Vec<String> = serde_json::from_str(&text).unwrap_or_default();
    for id in ids.iter().filter_map(|id| ids::SandboxId::parse(id).ok()) {
        match lc.connect(&id, None, true).await {
            Ok(_) => tracing::info!(sandbox = %id, "resumed after the restart (it was running at shutdown)"),
            Err(e) => tracing::warn!(sandbox = %id, "not resumed after the restart: {e}"),
        }
    }
    let _ = std::fs::remove_file(&path);
}

fn write_durably(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(path.parent().unwrap_or(std::path::Path::new("/")))?.sync_all()
}

pub async fn serve(cfg: ServeConfig) -> Result<()> {
    // Before anything touches the data dir: a second daemon must not even recover it.
    let _owner = stasis_runtime::lock::DataDirLock::acquire(&cfg.data_dir, stasis_runtime::lock::LockKind::Daemon)?;
    let (app, lifecycle, cluster) = build(&cfg).await?;
    lifecycle.start();
    cluster.spawn_heartbeat();
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("listen on {}", cfg.listen))?;
    let gate = listen::Gate::new(cfg.limits);
    tracing::info!("serving on http://{} (sandbox domain {})", listener.local_addr()?, cfg.domain);
    tracing::info!("dashboard on http://{}/dashboard/, metrics at /metrics", listener.local_addr()?);
    let tls_task = match cfg.tls_listen {
        Some(addr) => {
            let tls_cfg = tls::server_config(&cfg.data_dir.join("tls"), &cfg.domain).context("TLS (--tls-listen)")?;
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listen on {addr}"))?;
            tracing::info!(
                "serving on https://{} (CA: {})",
                l.local_addr()?,
                tls::files(&cfg.data_dir.join("tls")).ca_cert.display()
            );
            Some(tokio::spawn(gate.clone().serve(l, app.clone(), Some(tls_cfg))))
        }
        None => None,
    };
    let _abort_tls = tls_task.map(|t| t.abort_handle());
    tokio::select! {
        _ = gate.serve(listener, app, None) => {}
        _ = shutdown_signal() => {}
    }
    lifecycle.abandon_warms().await;
    if cfg.pause_on_shutdown {
        let ids = lifecycle.running_ids().await?;
        write_durably(&cfg.data_dir.join(RESUME_ON_START), serde_json::to_string(&ids)?.as_bytes())?;
        tracing::info!("pausing {} running sandboxes before exit", ids.len());
        let paused = lifecycle.pause_all("daemon shutdown (--pause-on-shutdown)").await;
        tracing::info!("paused {}; they resume at the next start", paused.len());
    }
    lifecycle.release_pools().await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
