//! `stasis tls init`.

use std::path::PathBuf;

use super::exit;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Make (or keep) the local CA that signs the certificates of `stasis serve --tls-listen`.
    Init {
        #[arg(long, env = "STASIS_DATA_DIR", default_value = "/var/lib/stasis")]
        data_dir: PathBuf,
        /// The sandbox domain of `stasis serve --domain`: the CA signs for it and its
        /// subdomains only (name constraints).
        #[arg(long, env = "STASIS_DOMAIN", default_value = "localhost")]
        domain: String,
        /// Replace a CA that is not constrained to the domain (clients must trust the new one).
        #[arg(long)]
        renew: bool,
    },
}

pub fn run(args: Args) -> u8 {
    match args.command {
        Cmd::Init { data_dir, domain, renew } => {
            match stasis_server::tls::init(&data_dir.join("tls"), &domain, renew) {
                Ok((f, warning)) => {
                    if let Some(w) = warning {
                        eprintln!("warning: {w}");
                    }
                    println!("CA certificate: {}", f.ca_cert.display());
                    println!(
                        "clients: NODE_EXTRA_CA_CERTS={} (Node), SSL_CERT_FILE / REQUESTS_CA_BUNDLE (Python)",
                        f.ca_cert.display()
                    );
                    exit::OK
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    exit::ERROR
                }
            }
        }
    }
}
