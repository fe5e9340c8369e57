//! `stasis serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use stasis_runtime::container::ContainerConfig;
use stasis_runtime::objstore::ObjectStoreConfig;
use stasis_server::cluster::capacity::Offered;
use stasis_server::cluster::ClusterConfig;
use stasis_server::ServeConfig;

use super::exit;

#[derive(clap::Args)]
pub struct Args {
    /// Address of the API and proxy.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    #[arg(long, env = "STASIS_DATA_DIR", default_value = "/var/lib/stasis")]
    data_dir: PathBuf,
    /// API key clients must send; generated (and printed once) when none is set.
    #[arg(long, env = "STASIS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Domain of sandbox hosts: `{port}-{id}.{domain}`.
    #[arg(long, env = "STASIS_DOMAIN", default_value = "localhost")]
    domain: String,
    /// Kill paused sandboxes older than this (e.g. 7d, 12h). Default: keep until killed.
    #[arg(long, value_parser = humantime::parse_duration)]
    paused_retention: Option<std::time::Duration>,
    /// The longest timeout a sandbox may ask for at create, connect and setTimeout (e.g.
    /// 30d, 12h); 0: no limit.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30d")]
    max_timeout: std::time::Duration,
    /// Park proxied connections across a pause instead of cutting them (each sandbox may
    /// say otherwise with its metadata `stasis_park_connections`: on, off or a limit):
    /// a connection survives a pause shorter than LIMIT (default 10m).
    #[arg(long, value_name = "LIMIT", num_args = 0..=1, default_missing_value = "10m", value_parser = parse_park_limit)]
    park_connections: Option<std::time::Duration>,
    /// On SIGTERM, pause every running sandbox; the next start resumes them.
    #[arg(long)]
    pause_on_shutdown: bool,
    /// Accepted and ignored: `network.rules` are applied by the egress proxy now
    /// (older versions stored them unapplied only with this flag).
    #[arg(long, hide = true)]
    accept_unapplied_network_rules: bool,
    /// Also trust the CA certificates in FILE (PEM) for the destinations of intercepted
    /// HTTPS (`network.rules`), besides the host's roots (repeat for more).
    #[arg(long = "egress-extra-root", value_name = "FILE")]
    egress_extra_roots: Vec<PathBuf>,
    /// Also serve HTTPS here (certificate from `stasis tls init` in the data dir).
    #[arg(long)]
    tls_listen: Option<SocketAddr>,
    /// State database: postgres://USER[:PASSWORD]@HOST[:PORT]/DB (several nodes share it)
    /// or sqlite:PATH. Default: SQLite at DATA_DIR/stasis.db.
    #[arg(long, env = "STASIS_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// Disk space on the data dir's filesystem kept for running sandboxes: creates,
    /// pauses and snapshots that would cut into it are refused (507). A size: 10GiB, 512M.
    #[arg(long, env = "STASIS_DISK_RESERVE", value_parser = stasis_runtime::container::space::parse_size, default_value = "1GiB")]
    disk_reserve: u64,
    /// Keep checkpoint and snapshot images in this S3 bucket as well (a pause is durable
    /// once they are uploaded; a resume fetches what this host lacks):
    /// s3://BUCKET[/PREFIX][?endpoint=http://HOST:PORT&region=NAME&parallel=N].
    /// Credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. Default: this host only.
    #[arg(long, env = "STASIS_OBJECT_STORE")]
    object_store: Option<String>,
    /// Connections open at once (both listeners); more wait in the kernel's backlog.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Time a client has to send a request's headers (also: how long a keep-alive
    /// connection may sit idle between requests).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    header_timeout: std::time::Duration,
    /// Time a client has to complete the TLS handshake.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    tls_handshake_timeout: std::time::Duration,
    /// A bearer token that may read `GET /metrics` (an API key may too).
    #[arg(long, env = "STASIS_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// A registry (HOST[:PORT]) template builds may pull from over plain HTTP or
    /// unverified TLS (repeat for more; loopback registries always may).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    /// This node's id in a cluster of `stasis serve` sharing one --database (a DNS name, as
    /// Kubernetes names nodes). Default: a single machine (node `local`, nothing forwarded).
    #[arg(long, env = "STASIS_NODE_ID")]
    node_id: Option<String>,
    /// Where the other nodes reach this one: http://HOST:PORT (its --listen, as they see
    /// it). Default: http://LISTEN.
    #[arg(long, env = "STASIS_ADVERTISE")]
    advertise: Option<String>,
    /// A file with the secret every node of the cluster shares (16+ characters, read once
    /// at start): requests forwarded between nodes carry it. Needed with --node-id.
    #[arg(long, env = "STASIS_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// How often this node renews its lease in the registry.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    heartbeat_interval: std::time::Duration,
    /// How long a lease holds: a node silent this long is declared dead and its running
    /// sandboxes lost (at least twice --heartbeat-interval).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    node_lease: std::time::Duration,
    /// Memory this node offers to sandboxes (placement); default: the host's. A size: 64GiB.
    #[arg(long, value_parser = stasis_runtime::container::space::parse_size)]
    node_memory: Option<u64>,
    /// CPUs this node offers to sandboxes (placement); default: the host's.
    #[arg(long)]
    node_cpus: Option<u32>,
    /// Log lines as text, or as JSON objects (one a line, for log shippers); a line about a
    /// sandbox carries its id in the field `sandbox`.
    #[arg(long, value_enum, default_value = "text", env = "STASIS_LOG_FORMAT")]
    log_format: LogFormat,
}

fn parse_park_limit(v: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(v).map_err(|e| e.to_string())?;
    if d.is_zero() || d > stasis_server::lifecycle::PARK_MAX_LIMIT {
        return Err("the park limit must be more than 0 and at most 24h".into());
    }
    Ok(d)
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STASIS_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).try_init(),
    };
}

pub async fn run(args: Args) -> u8 {
    init_logs(args.log_format);
    let object_store = match args.object_store.as_deref().map(ObjectStoreConfig::from_url).transpose() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let secret = match &args.cluster_secret_file {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(s) => Some(s.trim().to_string()),
            Err(e) => {
                eprintln!("error: --cluster-secret-file {}: {e}", p.display());
                return exit::USAGE;
            }
        },
        None => None,
    };
    let mut cluster = ClusterConfig::single(args.listen, args.data_dir.clone(), args.disk_reserve);
    cluster.node_id = args.node_id;
    cluster.secret = secret;
    cluster.advertise = args.advertise.unwrap_or(cluster.advertise);
    cluster.heartbeat = args.heartbeat_interval;
    cluster.lease = args.node_lease;
    cluster.capacity = Offered { memory_mb: args.node_memory.map(|b| b / (1024 * 1024)), cpu_count: args.node_cpus };
    if let Err(e) = cluster.validate() {
        eprintln!("error: {e}");
        return exit::USAGE;
    }
    let cfg = ServeConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        api_key: args.api_key,
        domain: args.domain,
        agent_binary: ContainerConfig::default_agent_binary(),
        paused_retention: args.paused_retention,
        pause_on_shutdown: args.pause_on_shutdown,
        max_timeout: Some(args.max_timeout).filter(|d| !d.is_zero()),
        egress_extra_roots: args.egress_extra_roots,
        tls_listen: args.tls_listen,
        database: args.database,
        disk_reserve: args.disk_reserve,
        object_store,
        limits: stasis_server::listen::Limits {
            max_connections: args.max_connections.max(1),
            header_timeout: args.header_timeout,
            tls_handshake_timeout: args.tls_handshake_timeout,
        },
        metrics_token: args.metrics_token,
        insecure_registries: args.insecure_registries,
        park_connections: args.park_connections,
        cluster,
    };
    match stasis_server::serve(cfg).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::ERROR
        }
    }
}
