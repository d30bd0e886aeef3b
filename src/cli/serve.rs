//! `ferry serve`: a read-only registry over an OCI image layout.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// OCI image layout folder to serve (it must hold `oci-layout` and `index.json`).
    pub path: PathBuf,
    /// IP address and port to listen on, such as 127.0.0.1:5000 or 0.0.0.0:5000.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<u8> {
    let layout = ferry::layout::Layout::open(&args.path)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}: choose another --listen address or port", args.listen))?;
    let address = listener.local_addr()?;
    eprintln!("serving {} read-only on http://{address} (Ctrl-C or SIGTERM stops)", args.path.display());
    let shutdown = async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    ferry::serve::serve(layout, listener, shutdown).await?;
    Ok(super::EXIT_OK)
}
