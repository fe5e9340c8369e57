//! A real PostgreSQL server for tests (this crate's and the daemon's end-to-end tests):
//! the machine's PostgreSQL binaries, a throwaway cluster in the temp dir, listening on
//! 127.0.0.1 only, started once per test process and stopped when it exits; each caller
//! gets a database of its own. Behind the `test-postgres` feature.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

/// The PostgreSQL server binaries: `$STASIS_TEST_PG_BIN`, else Debian's newest.
fn pg_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("STASIS_TEST_PG_BIN") {
        return p.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (apt-get install postgresql): the store tests need a real server")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("postgres").exists())
        .collect();
    found.sort();
    found.pop().expect("no /usr/lib/postgresql/*/bin/postgres")
}

/// `host=127.0.0.1 port=N user=postgres` of the test server, started on first use.
pub fn server() -> &'static str {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        // The server is a child of this thread, which never ends: PR_SET_PDEATHSIG stops
        // it when the test process exits.
        std::thread::spawn(move || {
            remove_dead_clusters();
            let bin = pg_bin();
            let dir = tempfile::Builder::new().prefix("stasis-pg-test-").tempdir().unwrap().keep();
            let data = dir.join("data");
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
            let initdb = Command::new(bin.join("initdb"))
                .args(["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
                .uid(uid)
                .gid(gid)
                .output()
                .expect("run initdb");
            assert!(initdb.status.success(), "initdb: {}", String::from_utf8_lossy(&initdb.stderr));
            let port = free_port();
            let mut child = unsafe {
                Command::new(bin.join("postgres"))
                    .args(["-D", data.to_str().unwrap(), "-p", &port.to_string(), "-k", dir.to_str().unwrap()])
                    .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"])
                    .uid(uid)
                    .gid(gid)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                        Ok(())
                    })
                    .spawn()
                    .expect("start postgres")
            };
            let start = Instant::now();
            // Accepting connections, not only listening (it refuses them while it starts).
            let ready = || {
                Command::new(bin.join("pg_isready"))
                    .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                    .status()
                    .is_ok_and(|s| s.success())
            };
            while !ready() {
                assert!(child.try_wait().unwrap().is_none(), "postgres exited at start");
                assert!(start.elapsed() < Duration::from_secs(30), "postgres did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
            tx.send(format!("host=127.0.0.1 port={port} user=postgres")).unwrap();
            let _ = child.wait();
        });
        rx.recv().unwrap()
    })
}

/// Clusters of earlier test processes (the server stops with its process, its directory
/// stays): removed once no postgres runs in them.
fn remove_dead_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let dir = e.path();
        if !e.file_name().to_string_lossy().starts_with("stasis-pg-test-") {
            continue;
        }
        let pid = std::fs::read_to_string(dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.parse::<u32>().ok());
        if pid.is_none_or(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()) {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line =
        passwd.lines().find(|l| l.starts_with("postgres:")).expect("no postgres user (is PostgreSQL installed?)");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A new, empty database on the test server: its connection string.
pub async fn fresh_database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!("t{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let (client, conn) = tokio_postgres::connect(&format!("{} dbname=postgres", server()), NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    format!("{} dbname={name}", server())
}
