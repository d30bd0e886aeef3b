//! `ferry serve`: a read-only registry over an OCI image layout or an archive, over HTTP or
//! HTTPS, with optional Basic authentication.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ferry::serve::{Htpasswd, ServeOptions, Store, TlsConfig};

use super::output::plural;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// OCI image layout folder (with oci-layout and index.json) or archive to serve. An archive is
    /// read in place, without extraction: a file, or its parts FILE.001, FILE.002, ... It must
    /// contain an OCI layout, as archives from ferry save, skopeo oci-archive: and docker save
    /// from Docker 25 on do.
    pub path: PathBuf,
    /// IP address and port to listen on, such as 127.0.0.1:5000 or 0.0.0.0:5000; port 0 picks a
    /// free port, shown in the startup line.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate chain (PEM, server certificate first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the --tls-cert certificate; needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require HTTP Basic authentication with the users of this htpasswd file. It must hold
    /// bcrypt entries only (htpasswd -B). Without --tls-cert, only a loopback --listen address
    /// is allowed, so that passwords never cross the network in clear text.
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<u8> {
    let store = Store::open(&args.path)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(certificate), Some(key)) => Some(TlsConfig::load(certificate, key)?),
        _ => None,
    };
    let htpasswd = args.htpasswd.as_deref().map(Htpasswd::load).transpose()?;
    let options = ServeOptions { tls, htpasswd };
    ferry::serve::check_transport(args.listen, &options)?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}: choose another --listen address or port", args.listen))?;
    let address = listener.local_addr()?;
    eprintln!("{}", startup_line(&store, &options, address));

    let shutdown = async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    ferry::serve::serve(store, listener, options, shutdown).await?;
    Ok(super::EXIT_OK)
}

/// Describes what is served, where, and how: for example `serving archive images.tar (2 images,
/// 3 parts) read-only on https://0.0.0.0:5000 with Basic authentication (4 users in
/// users.htpasswd); Ctrl-C or SIGTERM stops`.
fn startup_line(store: &Store, options: &ServeOptions, address: SocketAddr) -> String {
    let served = match store {
        Store::Layout(layout) => format!("OCI layout {}", layout.root().display()),
        Store::Archive(archive) => {
            let images = plural(archive.image_count(), "image");
            match archive.part_count() {
                1 => format!("archive {} ({images})", store.path().display()),
                parts => format!("archive {} ({images}, {parts} parts)", store.path().display()),
            }
        }
    };
    let scheme = if options.tls.is_some() { "https" } else { "http" };
    let authentication = match &options.htpasswd {
        Some(htpasswd) => format!("with Basic authentication ({} in {})", plural(htpasswd.user_count(), "user"), htpasswd.path().display()),
        None => "without authentication".to_owned(),
    };
    format!("serving {served} read-only on {scheme}://{address} {authentication}; Ctrl-C or SIGTERM stops")
}

