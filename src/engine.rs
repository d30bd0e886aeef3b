//! The Docker engine as a target: what it holds, where it stores it, and loading images into it
//! through `POST /images/load`.

use std::collections::HashSet;
use std::path::PathBuf;

use bollard::query_parameters::{ImportImageOptionsBuilder, ListImagesOptionsBuilder, RemoveImageOptionsBuilder};
use bollard::Docker;
use futures::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

/// A failed engine operation.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker engine at {endpoint}: {detail}; check that Docker runs and that DOCKER_HOST is right, or use --to oci:PATH")]
    Unreachable { endpoint: String, detail: String },
    #[error("Docker engine request {what} failed: {detail}")]
    Request { what: String, detail: String },
    #[error("the Docker engine rejected the image archive: {detail}")]
    LoadFailed { detail: String },
}

/// Facts about the engine that planning needs.
#[derive(Clone, Debug)]
pub struct EngineInfo {
    pub server_version: String,
    pub api_version: String,
    /// `DockerRootDir` as the daemon reports it: a path on the daemon's machine.
    pub root_dir: Option<PathBuf>,
    pub driver: String,
    /// True when the daemon runs on this machine (a unix socket), so `root_dir` can be measured.
    pub local: bool,
    /// True when `docker load` accepts zstd-compressed layers (API 1.42, Docker 23, and later).
    pub loads_zstd: bool,
    /// The daemon's own `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY`, as `GET /info` reports them
    /// (Docker replaces the credentials in proxy URLs with `xxxxx`); `None` when unset.
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

/// Image the engine has under one name.
#[derive(Clone, Debug)]
pub struct EngineImage {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub layers: Vec<String>,
}

pub struct Engine {
    docker: Docker,
    endpoint: String,
}

fn request_error(what: &str, err: bollard::errors::Error) -> EngineError {
    EngineError::Request { what: what.to_owned(), detail: err.to_string() }
}

impl Engine {
    /// Connects as the docker CLI does (`DOCKER_HOST`, else the local socket) and negotiates the
    /// API version.
    pub async fn connect() -> Result<Engine, EngineError> {
        let endpoint = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
        let unreachable = |detail: String| EngineError::Unreachable { endpoint: endpoint.clone(), detail };
        let docker = Docker::connect_with_defaults().map_err(|e| unreachable(e.to_string()))?;
        let docker = docker.negotiate_version().await.map_err(|e| unreachable(e.to_string()))?;
        docker.ping().await.map_err(|e| unreachable(e.to_string()))?;
        Ok(Engine { docker, endpoint })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub async fn info(&self) -> Result<EngineInfo, EngineError> {
        let info = self.docker.info().await.map_err(|e| request_error("GET /info", e))?;
        let version = self.docker.version().await.map_err(|e| request_error("GET /version", e))?;
        let api_version = version.api_version.unwrap_or_default();
        Ok(EngineInfo {
            server_version: version.version.unwrap_or_default(),
            loads_zstd: api_at_least(&api_version, 1, 42),
            api_version,
            root_dir: info.docker_root_dir.map(PathBuf::from),
            driver: info.driver.unwrap_or_default(),
            local: self.endpoint.starts_with("unix://"),
            http_proxy: info.http_proxy.filter(|v| !v.is_empty()),
            https_proxy: info.https_proxy.filter(|v| !v.is_empty()),
            no_proxy: info.no_proxy.filter(|v| !v.is_empty()),
        })
    }

    /// Inspects an image by name or ID; `None` when the engine does not have it.
    pub async fn image(&self, name: &str) -> Result<Option<EngineImage>, EngineError> {
        match self.docker.inspect_image(name).await {
            Ok(image) => Ok(Some(EngineImage {
                id: image.id.unwrap_or_default(),
                repo_tags: image.repo_tags.unwrap_or_default(),
                layers: image.root_fs.and_then(|r| r.layers).unwrap_or_default(),
            })),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(err) => Err(request_error(&format!("GET /images/{name}/json"), err)),
        }
    }

    /// Chain IDs of every layer stack the engine's images hold, so that layers it already has
    /// are neither downloaded nor sent again.
    pub async fn chain_ids(&self) -> Result<HashSet<Digest>, EngineError> {
        let options = ListImagesOptionsBuilder::new().all(false).build();
        let images = self.docker.list_images(Some(options)).await.map_err(|e| request_error("GET /images/json", e))?;
        let mut chains = HashSet::new();
        for summary in images {
            let Some(image) = self.image(&summary.id).await? else { continue };
            let diff_ids: Vec<Digest> = image.layers.iter().filter_map(|l| l.parse().ok()).collect();
            chains.extend(chain_ids(&diff_ids));
        }
        Ok(chains)
    }

    /// Streams a docker-archive into `POST /images/load` and returns the engine's messages.
    /// An error line anywhere in the response fails the load.
    pub async fn load<S>(&self, archive: S) -> Result<Vec<String>, EngineError>
    where
        S: Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    {
        let options = ImportImageOptionsBuilder::new().quiet(true).build();
        let mut responses = Box::pin(self.docker.import_image_stream(options, archive, None));
        let mut messages = Vec::new();
        while let Some(item) = responses.next().await {
            let info = item.map_err(|e| EngineError::LoadFailed { detail: e.to_string() })?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(EngineError::LoadFailed { detail });
            }
            if let Some(text) = info.stream.or(info.status) {
                messages.push(text.trim().to_owned());
            }
        }
        Ok(messages)
    }
}

impl Engine {
    /// Removes an image by ID, keeping the layers other images use. An image already gone is
    /// not an error.
    pub async fn remove_image(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveImageOptionsBuilder::new().force(false).noprune(false).build();
        match self.docker.remove_image(id, Some(options), None).await {
            Ok(_) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(err) => Err(request_error(&format!("DELETE /images/{id}"), err)),
        }
    }

    /// Lists the images that carry the label `key`, as pairs of image ID and label value.
    pub async fn images_labelled(&self, key: &str) -> Result<Vec<(String, String)>, EngineError> {
        let filters = std::collections::HashMap::from([("label".to_owned(), vec![key.to_owned()])]);
        let options = ListImagesOptionsBuilder::new().all(true).filters(&filters).build();
        let images = self.docker.list_images(Some(options)).await.map_err(|e| request_error("GET /images/json", e))?;
        Ok(images
            .into_iter()
            .map(|summary| {
                let value = summary.labels.get(key).cloned().unwrap_or_default();
                (summary.id, value)
            })
            .collect())
    }
}

/// ChainIDs of a layer stack: ChainID(1) = DiffID(1), ChainID(n) = sha256(ChainID(n-1) + " " + DiffID(n)).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chains: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let chain = match chains.last() {
            None => diff_id.clone(),
            Some(parent) => {
                let hex = hex::encode(Sha256::digest(format!("{parent} {diff_id}").as_bytes()));
                format!("sha256:{hex}").parse().expect("sha256 hex is a valid digest")
            }
        };
        chains.push(chain);
    }
    chains
}

fn api_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_of_one_layer_is_its_diff_id() {
        let diff: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
        assert_eq!(chain_ids(std::slice::from_ref(&diff)), vec![diff]);
    }

    #[test]
    fn chain_of_two_layers_hashes_parent_and_diff() {
        let a: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
        let chains = chain_ids(&[a.clone(), a.clone()]);
        let expected = Digest::of(format!("{a} {a}").as_bytes());
        assert_eq!(chains[1], expected);
    }

    #[test]
    fn api_version_comparison() {
        assert!(!api_at_least("1.41", 1, 42));
        assert!(api_at_least("1.42", 1, 42));
        assert!(api_at_least("1.47", 1, 42));
    }
}
