"""Build the benchmark's image set from real files of this machine, as an OCI image layout.

The set mimics a provisioning registry. It has a browser image of about 1.5 GB unpacked in 12
layers, an SSH image of about 300 MB and a second browser image, all three on the same base
layers. An update of the browser image differs from it in the top layer alone. Layers are deterministic tars
(sorted names, fixed mtime, uid and gid 0) compressed with gzip, so a rebuild on the same machine
gives the same digests. Each layer is filled with files read from its source folders until its
size budget is reached, so the compression ratio is that of real binaries, libraries and data.

Layers are cached in the layout between runs and built only when missing.
"""

from __future__ import annotations

import concurrent.futures
import glob
import gzip
import hashlib
import json
import os
import platform
import stat
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1 << 20

# Bump when the layer recipes or the tar format change, so cached layers are rebuilt.
RECIPE_VERSION = 1

# Every entry of every layer gets this modification time: 2024-01-01T00:00:00Z.
FIXED_MTIME = 1704067200
CREATED = "2024-01-01T00:00:00Z"

HOME = str(Path.home())

# Folders that fill a layer when its own folders run out of files (on a machine without them).
FALLBACK_ROOTS = ["/usr", "/opt", f"{HOME}/.rustup", f"{HOME}/.pyenv"]

# A layer stops taking files once less than this is left of its budget.
BUDGET_SLACK = 64 * 1024

# File that marks the release of a top layer. The update variant changes its content.
RELEASE_FILE = "etc/ferry-bench-release"


@dataclass(frozen=True)
class LayerRecipe:
    """One layer: a name, its unpacked size at scale 1 in MiB, and the folders it reads."""

    name: str
    mib: int
    roots: tuple[str, ...]
    release: str | None = None


def recipe(name: str, mib: int, *roots: str, release: str | None = None) -> LayerRecipe:
    return LayerRecipe(name, mib, tuple(roots), release)


# Base layers shared by all three images: 270 MiB.
BASE = [
    recipe("base-os", 120, "/usr/bin", "/usr/sbin"),
    recipe("base-libs", 120, "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"),
    recipe("base-data", 30, "/usr/share/zoneinfo", "/usr/share/ca-certificates", "/usr/share/i18n",
           "/usr/lib/locale", "/usr/share/perl", "/usr/share/perl5"),
]
# Browser layers. The second browser image shares the first two of them.
BROWSER_SHARED = [
    recipe("browser-desktop", 150, "/usr/share/icons", "/usr/share/fonts", "/usr/share/X11",
           "/usr/share/mime", "/usr/share/locale", "/usr/share"),
    recipe("browser-toolkit", 250, "/usr/lib/llvm-*", "/usr/lib/gcc"),
]
BROWSER_OWN = [
    recipe("browser-runtime", 200, "/usr/lib/jvm"),
    recipe("browser-engine", 350, f"{HOME}/.rustup/toolchains/*/lib"),
    recipe("browser-plugins", 120, "/opt"),
    recipe("browser-extras", 80, "/usr/include", "/usr/lib/python3", "/usr/lib/python3.*"),
    recipe("browser-resources", 50, "/usr/local", "/usr/lib/node_modules"),
    recipe("browser-locales", 20, "/usr/lib/postgresql", "/usr/lib/cni", "/usr/share/locale"),
]
BROWSER_TOP = recipe("browser-app", 10, "/usr/lib/google-cloud-sdk", release="1")
BROWSER_TOP_UPDATE = recipe("browser-app", 10, "/usr/lib/google-cloud-sdk", release="2")
SECOND_BROWSER_OWN = [
    recipe("browser2-engine", 150, f"{HOME}/.pyenv/versions/*/lib"),
    recipe("browser2-libs", 100, f"{HOME}/.pyenv"),
    recipe("browser2-app", 20, f"{HOME}/.rustup/toolchains/*/share", release="1"),
]
SSH_OWN = [
    recipe("ssh-server", 25, "/usr/lib/openssh", "/usr/libexec", "/usr/lib/git-core"),
    recipe("ssh-config", 5, "/usr/share/doc", release="1"),
]

# Image names in the layout, as REGISTRY_ENV short names, with their layers bottom first.
IMAGES = {
    "chromium": BASE + BROWSER_SHARED + BROWSER_OWN + [BROWSER_TOP],
    "ssh": BASE + SSH_OWN,
    "firefox": BASE + BROWSER_SHARED + SECOND_BROWSER_OWN,
}
# The update: the browser image with only its top layer changed.
UPDATE_IMAGE = "chromium-update"
UPDATE_LAYERS = BASE + BROWSER_SHARED + BROWSER_OWN + [BROWSER_TOP_UPDATE]


def layer_key(layer: LayerRecipe, scale: float) -> str:
    release = f"+release{layer.release}" if layer.release else ""
    return f"v{RECIPE_VERSION}:{layer.name}{release}@{int(layer.mib * MIB * scale)}"


@dataclass
class Entry:
    """A tar member: a folder, a regular file read from `source`, a symlink, or inline data."""

    name: str
    kind: str
    mode: int = 0o755
    size: int = 0
    source: str = ""
    target: str = ""
    data: bytes = b""


@dataclass
class Selection:
    """The files a layer takes, in tar order, and their unpacked size."""

    entries: list[Entry] = field(default_factory=list)
    bytes: int = 0


def expand_roots(roots: tuple[str, ...] | list[str]) -> list[str]:
    found: list[str] = []
    for pattern in roots:
        for path in sorted(glob.glob(pattern)):
            if os.path.isdir(path) and not os.path.islink(path) and path not in found:
                found.append(path)
    return found


def walk_files(root: str):
    """Yield (path, lstat) for files and symlinks under root, sorted, without following links."""
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        names = sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(folder, d))])
        for name in names:
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            yield path, info


def select_files(roots: list[str], budget: int, used: set[str], selection: Selection) -> None:
    """Add files from roots to selection until the budget is spent, skipping files in used."""
    for root in roots:
        for path, info in walk_files(root):
            if budget - selection.bytes < BUDGET_SLACK:
                return
            if path in used:
                continue
            name = path.lstrip("/")
            if stat.S_ISLNK(info.st_mode):
                used.add(path)
                selection.entries.append(Entry(name, "symlink", target=os.readlink(path)))
            elif stat.S_ISREG(info.st_mode):
                if info.st_size > budget - selection.bytes or not os.access(path, os.R_OK):
                    continue
                used.add(path)
                selection.entries.append(Entry(name, "file", stat.S_IMODE(info.st_mode), info.st_size, path))
                selection.bytes += info.st_size


def add_parent_folders(entries: list[Entry]) -> list[Entry]:
    """Return entries with a folder entry for every parent, sorted by name so parents come first."""
    folders: set[str] = set()
    for entry in entries:
        parts = entry.name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folders.add("/".join(parts[:depth]))
    names = {entry.name for entry in entries}
    result = entries + [Entry(folder, "dir") for folder in folders if folder not in names]
    result.sort(key=lambda entry: entry.name)
    return result


class HashingWriter:
    """A write-only stream that hashes and counts what passes through to `inner` (if any)."""

    def __init__(self, inner=None):
        self.inner = inner
        self.hash = hashlib.sha256()
        self.count = 0

    def write(self, data) -> int:
        self.hash.update(data)
        self.count += len(data)
        if self.inner is not None:
            self.inner.write(data)
        return len(data)

    def tell(self) -> int:
        return self.count

    def flush(self) -> None:
        pass


def write_layer(blobs: str, entries: list[Entry]) -> dict:
    """Write one gzip-compressed tar layer into the layout's blob folder; return its descriptor."""
    temporary = os.path.join(blobs, f".layer-{os.getpid()}.tmp")
    with open(temporary, "wb") as output:
        compressed = HashingWriter(output)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:
            uncompressed = HashingWriter(gz)
            with tarfile.open(fileobj=uncompressed, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for entry in entries:
                    add_entry(tar, entry)
    digest = compressed.hash.hexdigest()
    os.replace(temporary, os.path.join(blobs, digest))
    return {
        "digest": f"sha256:{digest}",
        "size": compressed.count,
        "diff_id": f"sha256:{uncompressed.hash.hexdigest()}",
        "unpacked": uncompressed.count,
    }


def add_entry(tar: tarfile.TarFile, entry: Entry) -> None:
    info = tarfile.TarInfo(entry.name)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = entry.mode
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.mode = 0o777
        info.linkname = entry.target
        tar.addfile(info)
    elif entry.kind == "data":
        info.size = len(entry.data)
        tar.addfile(info, _BytesReader(entry.data))
    else:
        info.size = entry.size
        with open(entry.source, "rb") as source:
            tar.addfile(info, source)


class _BytesReader:
    def __init__(self, data: bytes):
        self.data = data
        self.offset = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.offset + size
        chunk = self.data[self.offset:end]
        self.offset += len(chunk)
        return chunk


def host_architecture() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def write_blob(blobs: str, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(blobs, digest)
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as output:
            output.write(data)
        os.replace(path + ".tmp", path)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def canonical_json(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def write_image(blobs: str, name: str, layers: list[LayerRecipe], built: dict, scale: float, run_id: str) -> dict:
    """Write the config and manifest of one image; return its index entry and facts.

    The config carries run_id as a label, so each benchmark session gets image IDs of its own
    and can remove them from the engine without touching any image it did not create."""
    descriptors = [built[layer_key(layer, scale)] for layer in layers]
    config = {
        "architecture": host_architecture(),
        "os": "linux",
        "created": CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": {"org.opencontainers.image.title": name, "io.ferry.bench.run": run_id},
        },
        "rootfs": {"type": "layers", "diff_ids": [d["diff_id"] for d in descriptors]},
        "history": [{"created": CREATED, "created_by": f"ferry bench layer {layer.name}"} for layer in layers],
    }
    config_descriptor = write_blob(blobs, canonical_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_descriptor},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d["digest"], "size": d["size"]}
            for d in descriptors
        ],
    }
    manifest_descriptor = write_blob(blobs, canonical_json(manifest))
    return {
        "name": name,
        "manifest": manifest_descriptor,
        "config": config_descriptor,
        "layers": descriptors,
        "layer_names": [layer.name for layer in layers],
        "size": sum(d["size"] for d in descriptors),
        "unpacked": sum(d["unpacked"] for d in descriptors),
    }


def all_images() -> dict[str, list[LayerRecipe]]:
    return {**IMAGES, UPDATE_IMAGE: UPDATE_LAYERS}


def unique_layers(images: dict[str, list[LayerRecipe]]) -> list[LayerRecipe]:
    """Return every distinct layer, in the order files are assigned to them."""
    seen: list[LayerRecipe] = []
    for layers in images.values():
        for layer in layers:
            if layer not in seen:
                seen.append(layer)
    return seen


def plan_layers(layers: list[LayerRecipe], scale: float) -> dict[str, list[Entry]]:
    """Assign files to layers, each file to at most one layer (the update's top layer reuses the
    selection of the top layer it replaces, with another release file)."""
    used: set[str] = set()
    plans: dict[str, list[Entry]] = {}
    selections: dict[str, Selection] = {}
    for layer in layers:
        budget = int(layer.mib * MIB * scale)
        selection = selections.get(layer.name)
        if selection is None:
            selection = Selection()
            select_files(expand_roots(layer.roots), budget, used, selection)
            if budget - selection.bytes >= BUDGET_SLACK:
                select_files(expand_roots(FALLBACK_ROOTS), budget, used, selection)
            selections[layer.name] = selection
        entries = list(selection.entries)
        if layer.release is not None:
            entries.append(Entry(RELEASE_FILE, "data", 0o644, data=f"{layer.name} release {layer.release}\n".encode()))
        plans[layer_key(layer, scale)] = add_parent_folders(entries)
    return plans


def build(folder: Path, scale: float, run_id: str, log=print) -> dict:
    """Make sure the layers for this scale exist in folder, write this run's images into the
    layout, and return its description."""
    layout = folder / f"layout-scale-{scale:g}"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    state_path = layout / "layers.json"
    built: dict = json.loads(state_path.read_text()) if state_path.exists() else {}
    images = all_images()
    layers = unique_layers(images)
    keys = [layer_key(layer, scale) for layer in layers]
    missing = [key for key in keys if key not in built or not (blobs / built[key]["digest"].split(":")[1]).exists()]

    if missing:
        log(f"building {len(missing)} of {len(keys)} layers from the files of this machine (scale {scale:g})")
        plans = plan_layers(layers, scale)
        order = sorted(missing, key=lambda key: -sum(e.size for e in plans[key]))
        workers = max(1, min(len(order), os.cpu_count() or 1))
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(write_layer_in_worker, str(blobs), key, plans[key]): key for key in order}
            for future in concurrent.futures.as_completed(futures):
                key = futures[future]
                built[key] = future.result()
                log(f"  layer {key}: {built[key]['unpacked'] / MIB:.0f} MiB unpacked, {built[key]['size'] / MIB:.0f} MiB gzip")
                state_path.write_text(json.dumps(built, indent=1, sort_keys=True))

    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
    facts = {}
    for name, image_layers in images.items():
        image = write_image(str(blobs), name, image_layers, built, scale, run_id)
        facts[name] = image
        index["manifests"].append({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            **image["manifest"],
            "annotations": {"org.opencontainers.image.ref.name": name},
        })
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_text(json.dumps(index, indent=1))
    return {"path": str(layout), "scale": scale, "images": facts}


def write_layer_in_worker(blobs: str, key: str, entries: list[Entry]) -> dict:
    try:
        return write_layer(blobs, entries)
    except OSError as error:
        raise RuntimeError(f"cannot write layer {key}: {error}") from error


if __name__ == "__main__":
    result = build(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.1, "manual")
    for name, image in result["images"].items():
        print(f"{name}: {len(image['layers'])} layers, {image['unpacked'] / MIB:.0f} MiB unpacked, {image['size'] / MIB:.0f} MiB gzip")
