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
    },
}

pub fn run(args: Args) -> u8 {
    match args.command {
        Cmd::Init { data_dir } => match stasis_server::tls::init(&data_dir.join("tls")) {
            Ok(f) => {
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
        },
    }
}
