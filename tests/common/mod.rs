//! Shared harness for ferry's integration tests.
//!
//! Tests run the real `ferry` binary against real peers: the CNCF distribution registry 2.8
//! (`/usr/bin/docker-registry`), skopeo, and the machine's Docker engine. Only two parts are
//! served in-process: the HTTPS token endpoint for `auth: token` registries ([`TokenServer`]),
//! and [`FaultProxy`], which injects faults the real registry cannot produce.
//!
//! Every server binds a loopback address on a port chosen by the kernel. Docker repository names
//! come from [`unique_repo`] and are removed by [`RepoGuard`], because the engine is shared with
//! tests that run in parallel.
//!
//! The pieces:
//! - [`Pki`]: a test CA and a server certificate for 127.0.0.1, 127.0.0.2, localhost, ::1,
//!   registry.ferry.test and token.ferry.test, plus `certs.d`-style folders.
//! - [`Squid`]: a squid proxy on 127.0.0.1 with its access log.
//! - [`Registry`]: `start_plain`, `start_htpasswd`, `start_token`/`start_token_with`, with
//!   `host`, `url`, `ca_file`, `log`, `requests`, `count_requests`, `stop`, `restart` and
//!   `push` (skopeo, digests preserved).
//! - [`TokenServer`]: ES256 tokens with an `x5c` header on `https://localhost:<port>/token`,
//!   with recorded requests, issued-token count, denied users and short lifetimes.
//! - [`FaultProxy`]: cuts, 429, 503, flipped bytes, stalls and delays per request path.
//! - [`OciLayout`], [`ImageBuilder`], [`IndexBuilder`], [`LayerSpec`]: test images with their
//!   digests returned as [`BuiltImage`] and [`BuiltIndex`].
//! - [`unique_repo`], [`RepoGuard`], [`docker_inspect`], [`docker_load`], [`docker_remove_repo`].
//! - [`ferry_cmd`] and [`FerryEnv`]: the `ferry` binary with a clean environment.
//! - [`Tmpfs`]: a small tmpfs (the tests run as root) for free-space checks.
//!
//! Usage from a test file:
//!
//! ```ignore
//! mod common;
//! use common::*;
//!
//! let pki = Pki::new();
//! let registry = Registry::start_htpasswd(&pki, "alice", "secret");
//! let mut layout = OciLayout::new();
//! let image = ImageBuilder::new().layer(LayerSpec::random(4096)).write(&mut layout, "v1");
//! registry.push(&layout, "v1", "ferry-test/app:v1");
//! ```

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code, unused_imports)]

mod docker;
mod fault_proxy;
mod ferry;
mod image;
mod pki;
mod registry;
mod squid;
mod tmpfs;
mod token;

pub use docker::{docker_inspect, docker_load, docker_remove_repo, docker_save_archive, unique_repo, RepoGuard};
pub use fault_proxy::{Fault, FaultId, FaultProxy, FaultRule, ProxiedRequest};
pub use ferry::{ferry_cmd, run_json, write_docker_auth, FerryCmd, FerryEnv, FERRY_VARIABLES};
pub use image::{
    BuiltImage, BuiltIndex, BuiltLayer, Compression, ImageBuilder, IndexBuilder, LayerSpec,
    MediaTypes, OciLayout,
};
pub use pki::Pki;
pub use registry::{skopeo, skopeo_output, LoggedRequest, Registry, PROXY_VARIABLES};
pub use squid::{Squid, SquidOptions, PROXIED_NAMES};
pub use tmpfs::Tmpfs;
pub use token::{TokenOptions, TokenRequest, TokenServer, TokenUser};

use std::future::Future;
use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};

/// Returns the runtime that serves the in-process servers ([`TokenServer`], [`FaultProxy`]).
///
/// It is separate from any runtime a `#[tokio::test]` creates, so the servers keep running
/// while a synchronous test blocks on the `ferry` process.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ferry-test-harness")
            .enable_all()
            .build()
            .expect("failed to build the harness tokio runtime")
    })
}

/// Runs `future` to completion on the harness runtime, from a synchronous or an async test.
///
/// Inside an async context the call moves to a helper thread, because tokio forbids blocking
/// on a runtime from within another one.
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime().block_on(future);
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| runtime().block_on(future))
            .join()
            .expect("harness helper thread panicked")
    })
}

/// Returns `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Returns a loopback TCP port that was free a moment ago.
///
/// The port is released before the caller binds it again, so another process could take it in
/// between. [`Registry`] retries with a new port when that happens.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("failed to bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("failed to read the local address of a bound socket")
        .port()
}
