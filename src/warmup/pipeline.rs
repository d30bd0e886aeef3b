//! Warmup into Docker with the download and the engine's work overlapped.
//!
//! Docker's loader reads a whole upload before it registers a layer, so an image sent in one
//! `POST /images/load` after its last layer arrived keeps the engine idle during the download.
//! Here the layers download in stack order. Each time a longer bottom part of the stack is in
//! the cache, that part goes to the engine as a partial image, which is an untagged image whose
//! config lists only those layers, labelled [`PARTIAL_LABEL`]. The image itself goes last, without the
//! layer files the engine then has. Removing the partial images afterwards keeps their layers,
//! because the image uses them. After a failure the partial images are removed too, and with
//! them the layers no other image uses.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use futures::StreamExt;
use serde_json::json;

use super::{load_into_docker, LayerPlan, Prepared, WarmupError};
use crate::archive::{self, ArchiveImage, ArchiveLayer, BlobSource};
use crate::cache::BlobCache;
use crate::digest::Digest;
use crate::engine::{Engine, EngineInfo};
use crate::manifest::Descriptor;
use crate::reference::Reference;
use crate::registry::blob::{self, Fetched};
use crate::registry::Client;

/// Label of the partial images, set to the ID of the ferry process that loaded them.
pub const PARTIAL_LABEL: &str = "io.ferry.partial";

/// Blobs of the images after the current one, downloaded while the engine finishes the current
/// image, so the link does not sit idle meanwhile.
pub(super) struct Ahead<'a> {
    pub blobs: Vec<(&'a Reference, &'a Descriptor)>,
    pub fetched: &'a FetchedAhead,
}

/// Bytes downloaded ahead, by digest, until the image that uses the blob counts them.
#[derive(Default)]
pub(super) struct FetchedAhead(Mutex<HashMap<Digest, u64>>);

impl FetchedAhead {
    fn record(&self, digest: &Digest, bytes: u64) {
        self.0.lock().unwrap().insert(digest.clone(), bytes);
    }

    /// Removes `digests` and returns the bytes downloaded ahead for them.
    pub(super) fn take(&self, digests: &[Digest]) -> u64 {
        let mut fetched = self.0.lock().unwrap();
        digests.iter().filter_map(|digest| fetched.remove(digest)).sum()
    }
}

/// Progress callbacks of one image.
pub(super) struct Callbacks<'a> {
    pub on_bytes: &'a (dyn Fn(u64) + Send + Sync),
    pub on_stage: &'a (dyn Fn(&str) + Send + Sync),
}

/// True when the image can go through [`load_while_downloading`]: no layer needs unpacking
/// before the engine can read it.
pub(super) fn can_pipeline(info: &EngineInfo, prepared: &Prepared) -> bool {
    info.loads_zstd || prepared.layers.iter().all(|layer| layer.in_target || layer.compression != crate::manifest::Compression::Zstd)
}

/// Downloads the image's missing layers in stack order and loads each complete bottom part into
/// the engine while the rest downloads. Once the image's own layers are in, the blobs of
/// `ahead` download, one at a time, until the image is loaded. Returns the bytes downloaded
/// for this image.
#[allow(clippy::too_many_arguments)]
pub(super) async fn load_while_downloading(
    client: &Client,
    engine: &Engine,
    info: &EngineInfo,
    cache: &BlobCache,
    prepared: &Prepared,
    jobs: usize,
    ahead: &Ahead<'_>,
    callbacks: &Callbacks<'_>,
) -> Result<u64, WarmupError> {
    let Callbacks { on_bytes, on_stage } = *callbacks;
    let reference = &prepared.resolved.reference;
    let mut seen = HashSet::new();
    let missing: Vec<_> = prepared.layers.iter().filter(|l| !l.in_target && seen.insert(l.descriptor.digest.clone())).map(|l| &l.descriptor).collect();

    // Downloads run `jobs` at a time and report in stack order. A failure does not stop the
    // others, so every blob that can complete lands in the cache for the next run.
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let loaded = tokio::sync::Notify::new();
    let downloads = async {
        let mut results = futures::stream::iter(missing)
            .map(|descriptor| async move { (descriptor.digest.clone(), blob::download(client, reference, descriptor, cache, on_bytes).await) })
            .buffered(jobs.max(1));
        while let Some(item) = results.next().await {
            let _ = sender.send(item);
        }
        drop(sender);
        download_ahead(client, cache, ahead, &loaded).await;
    };

    let mut partials: Vec<Digest> = Vec::new();
    let loads = async {
        let mut ready: HashSet<Digest> = HashSet::new();
        let mut downloaded = 0;
        // Layers at the bottom of the stack that the engine has.
        let mut in_engine = prepared.layers.iter().take_while(|l| l.in_target).count();
        let mut stage_shown = false;
        while in_engine < prepared.layers.len() {
            let Some(first) = receiver.recv().await else { break };
            let mut arrived = vec![first];
            while let Ok(more) = receiver.try_recv() {
                arrived.push(more);
            }
            for (digest, result) in arrived {
                if let Fetched::Downloaded(bytes) = result? {
                    downloaded += bytes;
                }
                ready.insert(digest);
            }
            let complete = prepared.layers.iter().take_while(|l| l.in_target || ready.contains(&l.descriptor.digest)).count();
            if !stage_shown {
                on_stage("loading into Docker");
                stage_shown = true;
            }
            if complete == prepared.layers.len() {
                break;
            }
            if complete > in_engine {
                partials.push(load_partial(engine, cache, prepared, in_engine, complete).await?);
                in_engine = complete;
            }
        }
        if !stage_shown {
            on_stage("loading into Docker");
        }
        load_into_docker(engine, info, cache, prepared, in_engine).await?;
        Ok(downloaded)
    };
    let loads = async {
        let result = loads.await;
        // A stored permit: the download of blobs ahead stops even if it has not started yet.
        loaded.notify_one();
        result
    };
    let ((), result) = tokio::join!(downloads, loads);

    for id in &partials {
        if let Err(err) = engine.remove_image(id.as_str()).await {
            tracing::warn!(image_id = %id, error = %err, "failed to remove a partial image; remove it with docker rmi and its image ID");
        }
    }
    result
}

/// Downloads the blobs of `ahead` in order until `loaded` is notified. A download cut short
/// leaves its partial file, which the next download of that blob resumes. A failure is only
/// logged, because the image that needs the blob downloads it again and reports the error.
async fn download_ahead(client: &Client, cache: &BlobCache, ahead: &Ahead<'_>, loaded: &tokio::sync::Notify) {
    for (reference, descriptor) in &ahead.blobs {
        tokio::select! {
            biased;
            () = loaded.notified() => return,
            result = blob::download(client, reference, descriptor, cache, &|_| {}) => match result {
                Ok(Fetched::Downloaded(bytes)) => ahead.fetched.record(&descriptor.digest, bytes),
                Ok(Fetched::Cached) => {}
                Err(err) => tracing::debug!(digest = %descriptor.digest, error = %crate::error_message(&err), "downloading ahead failed"),
            },
        }
    }
}

/// Loads layers `0..complete` as a partial image, sending the files of `in_engine..complete`.
/// Returns the partial image's ID.
async fn load_partial(engine: &Engine, cache: &BlobCache, prepared: &Prepared, in_engine: usize, complete: usize) -> Result<Digest, WarmupError> {
    let stack: &[LayerPlan] = &prepared.layers[..complete];
    let diff_ids: Vec<&Digest> = stack.iter().map(|l| &l.diff_id).collect();
    let config = partial_config(&prepared.config, &diff_ids, &prepared.resolved.reference.to_string());
    let config_digest = Digest::of(&config);
    let layers = stack
        .iter()
        .enumerate()
        .map(|(position, layer)| {
            let descriptor = &layer.descriptor;
            let source = (position >= in_engine).then(|| BlobSource::File(cache.blob_path(&descriptor.digest)));
            ArchiveLayer { digest: descriptor.digest.clone(), size: descriptor.size, source }
        })
        .collect();
    let image = ArchiveImage { config_digest: config_digest.clone(), config, repo_tags: Vec::new(), layers };
    tracing::debug!(reference = %prepared.resolved.reference, layers = complete, image_id = %config_digest, "loading a partial image");
    engine.load(archive::docker_archive(vec![image])).await?;
    Ok(config_digest)
}

/// Returns the config of a partial image: the platform fields of `config`, the first layers'
/// DiffIDs, and labels naming this process and the image, so each run's partial images have
/// IDs of their own.
fn partial_config(config: &[u8], diff_ids: &[&Digest], reference: &str) -> Vec<u8> {
    let original: serde_json::Value = serde_json::from_slice(config).unwrap_or_default();
    let mut partial = serde_json::Map::new();
    for key in ["architecture", "os", "os.version", "variant"] {
        if let Some(value) = original.get(key) {
            partial.insert(key.to_owned(), value.clone());
        }
    }
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    partial.insert(
        "config".to_owned(),
        json!({ "Labels": { PARTIAL_LABEL: std::process::id().to_string(), "io.ferry.partial.of": reference, "io.ferry.partial.nonce": nonce.to_string() } }),
    );
    partial.insert("rootfs".to_owned(), json!({ "type": "layers", "diff_ids": diff_ids }));
    serde_json::to_vec(&partial).expect("a JSON map serializes")
}

/// Removes partial images that an interrupted ferry process left in a local engine: those whose
/// label names a process that no longer runs.
pub async fn remove_leftovers(engine: &Engine, info: &EngineInfo) -> Result<(), WarmupError> {
    if !info.local {
        return Ok(());
    }
    for (id, pid) in engine.images_labelled(PARTIAL_LABEL).await? {
        let running = pid.parse::<u32>().is_ok_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !running {
            tracing::info!(image_id = %id, "removing a partial image an interrupted warmup left");
            engine.remove_image(&id).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_config_keeps_platform_and_lists_layers() {
        let config = br#"{"architecture":"arm64","variant":"v8","os":"linux","config":{"Env":["A=1"]},"rootfs":{"type":"layers","diff_ids":["sha256:aa","sha256:bb"]}}"#;
        let first = Digest::of(b"first");
        let value: serde_json::Value = serde_json::from_slice(&partial_config(config, &[&first], "r.example/a:1")).unwrap();
        assert_eq!(value["architecture"], "arm64");
        assert_eq!(value["variant"], "v8");
        assert_eq!(value["os"], "linux");
        assert_eq!(value["rootfs"]["diff_ids"], json!([first.to_string()]));
        assert_eq!(value["config"]["Labels"][PARTIAL_LABEL], std::process::id().to_string());
        assert_eq!(value["config"]["Labels"]["io.ferry.partial.of"], "r.example/a:1");
        assert!(value["config"].get("Env").is_none());
    }

    #[test]
    fn partial_configs_differ_between_calls() {
        let first = Digest::of(b"first");
        let one = partial_config(b"{}", &[&first], "r.example/a:1");
        let two = partial_config(b"{}", &[&first], "r.example/a:1");
        assert_ne!(one, two);
    }
}
