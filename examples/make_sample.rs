//! Writes the sample OCI image layout kept in `samples/demo`:
//!
//!     cargo run --example make_sample -- samples/demo
//!
//! The layout contains one OCI image index for linux/amd64 and linux/arm64, annotated so that
//! `ferry serve` exposes it as `demochromium:latest`. Each platform has a config and two gzip
//! layers of small text files. Timestamps, owners, entry order and gzip headers are fixed, so
//! running it again gives byte-identical files (with the same flate2 backend and level).
//! An existing layout at PATH is deleted first so that no stale blobs remain.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use ferry::digest::Digest;
use ferry::layout::Layout;
use flate2::{Compression, GzBuilder};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Os,
    PlatformBuilder, RootFsBuilder,
};

const IMAGE_NAME: &str = "demochromium:latest";
const TAG: &str = "latest";
/// 2024-01-01T00:00:00Z, used for every timestamp in the image.
const MTIME: u64 = 1_704_067_200;
const CREATED: &str = "2024-01-01T00:00:00Z";

const README: &str = "\
This is the ferry sample image (demochromium:latest).

It contains only text files and no programs, so a container started from it
cannot run its command. It exists to test pulling, loading and serving images
with ferry without any network access: the repository keeps it in
samples/demo as an OCI image layout, and `ferry serve samples/demo` serves it.
";

/// One file or folder in a layer.
enum Entry<'a> {
    Folder(&'a str),
    File(&'a str, &'a str),
}

/// A gzip layer blob with its digest and the digest of the uncompressed tar (the DiffID).
struct Layer {
    blob: Vec<u8>,
    diff_id: Digest,
}

fn main() -> anyhow::Result<()> {
    let Some(target) = std::env::args_os().nth(1) else {
        bail!("usage: cargo run --example make_sample -- PATH (for example samples/demo)");
    };
    let target = Path::new(&target);
    if target.exists() {
        // Only a folder that is already a layout is replaced, never an unrelated folder.
        Layout::open(target).with_context(|| format!("refusing to replace {}", target.display()))?;
        fs_err::remove_dir_all(target)?;
    }
    let layout = Layout::create(target)?;

    let shared = layer(&[
        Entry::Folder("etc/"),
        Entry::Folder("etc/ferry-sample/"),
        Entry::File("etc/ferry-sample/README", README),
    ])?;

    let mut manifests = Vec::new();
    for (arch, name) in [(Arch::Amd64, "amd64"), (Arch::ARM64, "arm64")] {
        let platform_text = format!("linux/{name}\n");
        let own = layer(&[
            Entry::Folder("etc/"),
            Entry::Folder("etc/ferry-sample/"),
            Entry::File("etc/ferry-sample/platform", &platform_text),
        ])?;
        let manifest = platform_manifest(&layout, arch.clone(), &[&shared, &own])?;
        let platform = PlatformBuilder::default().architecture(arch).os(Os::Linux).build()?;
        let mut descriptor = manifest;
        descriptor.set_platform(Some(platform));
        manifests.push(descriptor);
    }

    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()?;
    let index = write_json(&layout, MediaType::ImageIndex, &index)?;
    layout.add_entry(&index, Some(IMAGE_NAME), Some(TAG))?;

    println!("wrote {} as {IMAGE_NAME} ({})", layout.root().display(), index.digest());
    Ok(())
}

/// Writes the config, layers and manifest of one platform and returns the manifest descriptor.
fn platform_manifest(layout: &Layout, arch: Arch, layers: &[&Layer]) -> anyhow::Result<Descriptor> {
    let diff_ids = layers.iter().map(|layer| layer.diff_id.to_string()).collect::<Vec<_>>();
    let config = ImageConfigurationBuilder::default()
        .created(CREATED)
        .architecture(arch)
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .env(vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()])
                .cmd(vec!["cat".to_owned(), "/etc/ferry-sample/README".to_owned()])
                .build()?,
        )
        .rootfs(RootFsBuilder::default().typ("layers").diff_ids(diff_ids).build()?)
        .build()?;
    let config = write_json(layout, MediaType::ImageConfig, &config)?;

    let mut layer_descriptors = Vec::new();
    for layer in layers {
        let digest = Digest::of(&layer.blob);
        layout.write_blob(&digest, &layer.blob)?;
        layer_descriptors.push(descriptor(MediaType::ImageLayerGzip, &digest, layer.blob.len()));
    }

    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layer_descriptors)
        .build()?;
    write_json(layout, MediaType::ImageManifest, &manifest)
}

/// Builds a gzip tar layer from `entries`, in the given order, with fixed metadata.
fn layer(entries: &[Entry]) -> anyhow::Result<Layer> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(MTIME);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            Entry::Folder(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, path, std::io::empty())?;
            }
            Entry::File(path, content) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(content.len() as u64);
                builder.append_data(&mut header, path, content.as_bytes())?;
            }
        }
    }
    let tar = builder.into_inner()?;

    // GzBuilder writes an mtime of 0 and no file name by default.
    let mut gzip = GzBuilder::new().write(Vec::new(), Compression::best());
    gzip.write_all(&tar)?;
    Ok(Layer { blob: gzip.finish()?, diff_id: Digest::of(&tar) })
}

/// Serializes `value`, writes it as a blob and returns its descriptor.
fn write_json(layout: &Layout, media_type: MediaType, value: &impl serde::Serialize) -> anyhow::Result<Descriptor> {
    let bytes = serde_json::to_vec(value)?;
    let digest = Digest::of(&bytes);
    layout.write_blob(&digest, &bytes)?;
    Ok(descriptor(media_type, &digest, bytes.len()))
}

fn descriptor(media_type: MediaType, digest: &Digest, size: usize) -> Descriptor {
    let digest = oci_spec::image::Digest::try_from(digest.as_str()).expect("ferry digests are valid OCI digests");
    Descriptor::new(media_type, size as u64, digest)
}
