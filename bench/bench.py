"""ferry's benchmark: warmup, save, load and mirror against Docker and skopeo on a real image set.

Run it through bench/run, which installs what it needs first. It builds ferry unless FERRY_BIN
names a binary, and makes the image set from files of this machine. It serves the set from the
CNCF distribution registry on 127.0.0.1 and times each step N times. The slow-link step serves
the same storage from a second registry in a network namespace behind a shaped veth pair. The
results go into the work folder as a Markdown table and a JSON file of raw numbers.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import imageset
import report
from tools import Engine, Forwarder, Measurement, Registry, Runner, ShapedLink, parse_delay, parse_rate, process_cpu, settle

REPOSITORY = Path(__file__).resolve().parent.parent

# Images of the warmup list, as short names under REGISTRY_ENV, and the tag of the update.
NAMES = ["chromium", "ssh", "firefox"]
UPDATE_TAG = "update"

# Archive kinds the load step reads, with the tool that wrote them.
ARCHIVE_KINDS = ["ferry", "docker_save", "skopeo_docker_archive", "skopeo_oci_archive"]

# skopeo transports the save step writes, with the archive kind each one makes.
SAVE_TRANSPORTS = [("docker-archive", "skopeo_docker_archive"), ("oci-archive", "skopeo_oci_archive")]

STEPS = ["warmup", "save", "load", "ceilings", "mirror", "slowlink"]

# Tools of the mirror step, and the images each one copies, as (short name, tag).
MIRROR_TOOLS = ["ferry", "skopeo_copy", "skopeo_sync"]
MIRROR_IMAGES = [(name, "latest") for name in NAMES] + [("chromium", UPDATE_TAG)]
MIRROR_CASES = ["cold", "unchanged"]

# Port of the registry in the slow link's network namespace.
SLOW_REGISTRY_PORT = 5000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="size of the image set relative to the full one (default 1: a 1.5 GB browser image)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each step; the tables show medians (default 3)")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated steps to run (default: {','.join(STEPS)})")
    parser.add_argument("--slow-rate", default="200mbit", help="rate of the slow link in each direction, in tc units such as 200mbit (default: 200mbit)")
    parser.add_argument("--slow-delay", default="25ms", help="one-way delay of the slow link, in tc units such as 25ms, so the round-trip time is twice this (default: 25ms)")
    parser.add_argument("--report", type=Path, metavar="RESULTS_JSON",
                        help="rewrite the Markdown table from the results.json of an earlier session, and run nothing")
    parser.add_argument("--work-dir", type=Path, default=Path(os.environ.get("FERRY_BENCH_DIR") or REPOSITORY / "bench" / "work"),
                        help="folder for the build, the image set, the registry and the results (default: $FERRY_BENCH_DIR, else bench/work)")
    args = parser.parse_args()
    if args.scale <= 0:
        parser.error(f"invalid --scale {args.scale}: it must be positive, such as 0.1 or 1")
    if args.runs < 1:
        parser.error(f"invalid --runs {args.runs}: it must be at least 1")
    args.steps = [step.strip() for step in args.steps.split(",") if step.strip()]
    if not args.steps and not args.report:
        parser.error(f"--steps names no step: choose from {', '.join(STEPS)}")
    unknown = set(args.steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}: choose from {', '.join(STEPS)}")
    try:
        args.slow_rate_bits = parse_rate(args.slow_rate)
    except ValueError as error:
        parser.error(f"invalid --slow-rate {args.slow_rate!r}: {error}")
    try:
        args.slow_delay_seconds = parse_delay(args.slow_delay)
    except ValueError as error:
        parser.error(f"invalid --slow-delay {args.slow_delay!r}: {error}")
    if args.slow_rate_bits <= 0:
        parser.error("--slow-rate must be positive")
    if "load" in args.steps and "save" not in args.steps:
        parser.error("the load step reads the archives of the save step: add save to --steps")
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def ferry_binary(work: Path, runner: Runner) -> Path:
    """Return FERRY_BIN, else build ferry in release mode with a target folder of its own."""
    if os.environ.get("FERRY_BIN"):
        binary = Path(os.environ["FERRY_BIN"])
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"FERRY_BIN={binary} is not an executable file")
        return binary
    target = work / "target"
    log(f"building ferry with cargo build --release --locked (target folder {target}); a cold build takes about 10 minutes on 2 cores")
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    subprocess.run(["cargo", "build", "--release", "--locked"], cwd=REPOSITORY, env=env, check=True)
    return target / "release" / "ferry"


def machine_facts(ferry: Path) -> dict:
    def output(command: list[str]) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) * 1024
    os_release = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            os_release[key] = value.strip('"')
    info = output(["docker", "info", "--format", "{{json .}}"])
    docker_info = json.loads(info) if info.startswith("{") else {}
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_bytes": memory,
        "os": os_release.get("PRETTY_NAME", ""),
        "kernel": platform.release(),
        "docker_server": output(["docker", "version", "--format", "{{.Server.Version}}"]),
        "docker_client": output(["docker", "version", "--format", "{{.Client.Version}}"]),
        "docker_storage_driver": docker_info.get("Driver", ""),
        "docker_root": docker_info.get("DockerRootDir", ""),
        "skopeo": output(["skopeo", "--version"]),
        "registry": output(["/usr/bin/docker-registry", "--version"]),
        "ferry": output([str(ferry), "--version"]),
        "ferry_source": f"FERRY_BIN={ferry}" if os.environ.get("FERRY_BIN") else "built from this checkout",
        "ferry_commit": output(["git", "-C", str(REPOSITORY), "rev-parse", "--short", "HEAD"]),
        "python": platform.python_version(),
    }


@dataclass
class Origin:
    """A registry as a step's clients reach it: the host:port of the image references, and the
    registry process whose access log counts their requests."""

    host: str
    registry: Registry


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work: Path = args.work_dir.resolve()
        self.session = secrets.token_hex(3)
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.session_dir = self.work / "sessions" / f"{self.started:%Y%m%dT%H%M%SZ}-{self.session}"
        self.runner = Runner(self.session_dir / "logs")
        self.prefix = f"ferrybench-{self.session}-"
        self.cache = self.work / "ferry-cache"
        self.archives = self.work / "archives"
        self.registry: Registry | None = None
        self.loopback: Origin | None = None
        self.link: ShapedLink | None = None
        self.slow_registry: Registry | None = None
        self.forwarder: Forwarder | None = None
        self.slow: Origin | None = None
        self.mirror_destination: Registry | None = None
        self.slow_archives = self.work / "slowlink-archives"
        self.engine: Engine | None = None
        self.results: dict = {"runs": []}

    # References and image facts.

    def reference(self, name: str, tag: str = "latest", host: str | None = None) -> str:
        return f"{host or self.registry.host}/{self.prefix}{name}:{tag}"

    def expected_ids(self, host: str | None = None) -> dict[str, str]:
        return {self.reference(name, host=host): self.images[name]["config"]["digest"] for name in NAMES}

    def ferry_settings(self, warmup: str, host: str | None = None) -> list[str]:
        host = host or self.registry.host
        return ["--plain-http", host, "--registry-url", host, "--registry-env", self.prefix, "--warmup", warmup, "--cache-dir", str(self.cache)]

    def empty_cache(self) -> None:
        if self.cache.exists():
            shutil.rmtree(self.cache)

    # Setup.

    def setup(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.archives.mkdir(parents=True, exist_ok=True)
        self.results["load_average_start"] = os.getloadavg()
        self.results["started"] = self.started.isoformat(timespec="seconds")
        self.ferry = ferry_binary(self.work, self.runner)
        self.results["machine"] = machine_facts(self.ferry)
        self.results["settings"] = {
            "scale": self.args.scale, "runs": self.args.runs, "steps": self.args.steps, "session": self.session,
            "slow_rate": self.args.slow_rate, "slow_delay": self.args.slow_delay,
        }
        log(f"image set at scale {self.args.scale:g}")
        self.imageset = imageset.build(self.work / "images", self.args.scale, self.session, log=log)
        self.images = self.imageset["images"]
        self.results["imageset"] = self.describe_imageset()

        self.registry = Registry(self.work / "registry")
        self.registry.start()
        log(f"registry on {self.registry.host}, pushing the image set under {self.prefix}*")
        ids = [image["config"]["digest"] for image in self.images.values()]
        self.engine = Engine(ids, self.prefix)
        layout = self.imageset["path"]
        pushes = [(name, self.reference(name)) for name in NAMES] + [(imageset.UPDATE_IMAGE, self.reference("chromium", UPDATE_TAG))]
        for name, reference in pushes:
            self.runner.check(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--format", "v2s2", f"oci:{layout}:{name}", f"docker://{reference}"], f"push-{name}")
        self.loopback = Origin(self.registry.host, self.registry)
        if "slowlink" in self.args.steps:
            self.start_slow_link()

    def start_slow_link(self) -> None:
        """Serve the registry's storage across a shaped link, reached through 127.0.0.1."""
        self.link = ShapedLink(self.session, self.args.slow_rate_bits)
        self.link.create()
        folder = self.work / "slowlink-registry"
        address = f"{self.link.netns_address}:{SLOW_REGISTRY_PORT}"
        self.slow_registry = Registry(folder, address=address, netns=self.link.netns, storage=self.registry.storage)
        self.slow_registry.start()
        self.forwarder = Forwarder(address, self.args.slow_delay_seconds, folder / "forwarder.log")
        self.forwarder.start()
        self.slow = Origin(self.forwarder.host, self.slow_registry)
        self.results["slow_link"] = {
            "rate": self.args.slow_rate,
            "delay": self.args.slow_delay,
            "rate_bits": self.args.slow_rate_bits,
            "delay_seconds": self.args.slow_delay_seconds,
            "shaping": f"{self.link.describe()}; the forwarder on {self.forwarder.host} adds {self.args.slow_delay} in each direction",
            "path": f"clients -> forwarder on {self.forwarder.host} -> veth {self.link.host_link} -> registry on {address} in {self.link.netns}",
        }
        log(f"slow link: {self.results['slow_link']['shaping']}; registry {address}")

    def describe_imageset(self) -> dict:
        unique: dict[str, dict] = {}
        for name in NAMES:
            for layer in self.images[name]["layers"]:
                unique[layer["digest"]] = layer
        update_top = self.images[imageset.UPDATE_IMAGE]["layers"][-1]
        return {
            "images": {
                name: {"layers": len(image["layers"]), "size": image["size"], "unpacked": image["unpacked"]}
                for name, image in self.images.items()
            },
            "unique_layers": len(unique),
            "unique_size": sum(layer["size"] for layer in unique.values()),
            "unique_unpacked": sum(layer["unpacked"] for layer in unique.values()),
            "update_layer_size": update_top["size"],
            "biggest_layer": max(unique.values(), key=lambda layer: layer["size"]),
        }

    # Checks after each transfer.

    def verify_names(self, measurement: Measurement, references: dict[str, str]) -> None:
        """Mark the measurement failed unless each reference names the expected image ID."""
        for reference, expected in references.items():
            found = self.engine.image_id(reference)
            if found != expected:
                measurement.ok = False
                measurement.error = measurement.error or f"after the step, {reference} is {found or 'missing'} instead of {expected}"

    def verify_present(self, measurement: Measurement, references: list[str]) -> None:
        missing = [reference for reference in references if self.engine.image_id(reference) is None]
        if missing:
            measurement.ok = False
            measurement.error = measurement.error or f"after the step, {', '.join(missing)} are missing"

    @staticmethod
    def counted(registries: dict[str, Registry], measure: Callable[[], Measurement]) -> Measurement:
        """Run `measure` and attach the requests each registry (by role) received meanwhile."""
        offsets = {role: registry.log_size() for role, registry in registries.items()}
        result = measure()
        settle([registry.log_path for registry in registries.values()])
        result.requests = {role: registry.requests_since(offsets[role]) for role, registry in registries.items()}
        return result

    # Steps.

    def warmup_step(self, run: dict, origin: Origin, key: str = "warmup") -> None:
        """Time ferry warmup and docker pull from `origin`: cold, warm, and the update."""
        host = origin.host
        names = ",".join(NAMES)
        references = [self.reference(name, host=host) for name in NAMES]
        expected = self.expected_ids(host)
        update_reference = self.reference("chromium", UPDATE_TAG, host)
        update_id = self.images[imageset.UPDATE_IMAGE]["config"]["digest"]
        warmup = [str(self.ferry), "warmup"]
        label = key.replace(".", "-")
        source = {"source": origin.registry}

        def time_ferry(case: str, images: str) -> Measurement:
            return self.counted(source, lambda: self.runner.run(warmup + self.ferry_settings(images, host), f"{label}-{case}-ferry", capture=True))

        def time_docker_pull(case: str, pulled: list[str]) -> Measurement:
            return self.counted(source, lambda: self.docker_pull(pulled, f"{label}-{case}-docker"))

        log(f"{key}: ferry, cold")
        self.engine.remove()
        self.empty_cache()
        result = time_ferry("cold", names)
        self.verify_names(result, expected)
        run[f"{key}.cold.ferry"] = result

        log(f"{key}: ferry, warm")
        result = time_ferry("warm", names)
        self.verify_names(result, expected)
        run[f"{key}.warm.ferry"] = result

        log(f"{key}: ferry, update")
        result = time_ferry("update", f"chromium:{UPDATE_TAG}")
        self.verify_names(result, {update_reference: update_id})
        run[f"{key}.update.ferry"] = result
        self.engine.remove([update_id])

        log(f"{key}: docker pull, cold")
        self.engine.remove()
        result = time_docker_pull("cold", references)
        self.verify_names(result, expected)
        run[f"{key}.cold.docker"] = result

        log(f"{key}: docker pull, warm")
        result = time_docker_pull("warm", references)
        self.verify_names(result, expected)
        run[f"{key}.warm.docker"] = result

        log(f"{key}: docker pull, update")
        result = time_docker_pull("update", [update_reference])
        self.verify_names(result, {update_reference: update_id})
        run[f"{key}.update.docker"] = result
        self.engine.remove([update_id])

    def docker_pull(self, references: list[str], label: str) -> Measurement:
        total = Measurement()
        for reference in references:
            total.add(self.runner.run(["docker", "pull", "--quiet", reference], label))
        return total

    def save_step(self, run: dict, origin: Origin, key: str = "save", archives: Path | None = None,
                  transports: list[tuple[str, str]] = SAVE_TRANSPORTS, pull_key: str = "warmup.cold.docker") -> None:
        """Time ferry save, docker pull + docker save and skopeo copy to archives, from `origin`.

        The docker pull is the cold one of this run's warmup step (`pull_key`) when there is one."""
        host = origin.host
        archives = archives or self.archives
        label = key.replace(".", "-")
        source = {"source": origin.registry}
        references = [self.reference(name, host=host) for name in NAMES]
        archives.mkdir(parents=True, exist_ok=True)
        for path in archives.iterdir():
            path.unlink()

        log(f"{key}: ferry save, cold cache")
        self.empty_cache()
        output = archives / "ferry.tar"
        command = [str(self.ferry), "save", "-o", str(output), "--platform", f"linux/{imageset.host_architecture()}"]
        result = self.counted(source, lambda: self.runner.run(command + self.ferry_settings(",".join(NAMES), host), f"{label}-ferry", capture=True))
        run[f"{key}.ferry"] = self.with_size(result, [output])

        # docker pull + docker save: the cold pull of this run's warmup step plus docker save of
        # the images it pulled. Without the warmup step, pull them here.
        pull = run.get(pull_key)
        if pull is None:
            log(f"{key}: docker pull, cold")
            self.engine.remove()
            pull = self.counted(source, lambda: self.docker_pull(references, f"{label}-docker-pull"))
            run[f"{key}.docker_pull"] = pull
        else:
            pull = copy.deepcopy(pull)
            missing = [r for r in references if self.engine.image_id(r) is None]
            if missing:
                self.docker_pull(missing, f"{label}-docker-pull-missing")
        log(f"{key}: docker save")
        output = archives / "docker_save.tar"
        saved = self.runner.run(["docker", "save", "-o", str(output), *references], f"{label}-docker-save")
        run[f"{key}.docker_save"] = self.with_size(saved, [output])
        total = Measurement()
        total.add(pull)
        total.add(saved)
        total.requests = pull.requests
        run[f"{key}.docker"] = self.with_size(total, [output])

        for transport, kind in transports:
            log(f"{key}: skopeo copy to {transport}")
            files = [archives / f"{kind}-{name}.tar" for name in NAMES]

            def copy_all() -> Measurement:
                total = Measurement()
                for path, reference in zip(files, references):
                    total.add(self.runner.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{reference}", f"{transport}:{path}:{reference}"], f"{label}-{kind}"))
                return total

            run[f"{key}.{kind}"] = self.with_size(self.counted(source, copy_all), files)

    @staticmethod
    def with_size(measurement: Measurement, files: list[Path]) -> Measurement:
        measurement.size = sum(path.stat().st_size for path in files if path.exists())
        return measurement

    def archive_files(self, kind: str) -> list[Path]:
        if kind in ("ferry", "docker_save"):
            return [self.archives / f"{kind}.tar"]
        return [self.archives / f"{kind}-{name}.tar" for name in NAMES]

    def load_step(self, run: dict) -> None:
        for kind in ARCHIVE_KINDS:
            files = self.archive_files(kind)
            if not all(path.exists() for path in files):
                continue
            size = sum(path.stat().st_size for path in files)

            log(f"load: ferry load of the {kind} archive")
            self.engine.remove()
            self.empty_cache()
            result = self.runner.run([str(self.ferry), "load", "--cache-dir", str(self.cache), *map(str, files)], f"load-{kind}-ferry", capture=True)
            self.check_load(result, kind)
            result.size = size
            run[f"load.{kind}.ferry"] = result

            log(f"load: docker load of the {kind} archive")
            self.engine.remove()
            total = Measurement()
            for path in files:
                total.add(self.runner.run(["docker", "load", "--quiet", "-i", str(path)], f"load-{kind}-docker"))
            if total.ok:
                self.check_load(total, kind)
            total.size = size
            run[f"load.{kind}.docker"] = total
        self.engine.remove()

    def check_load(self, measurement: Measurement, kind: str) -> None:
        # skopeo converts the image config when it writes an OCI archive from a Docker image, so
        # the image IDs of that archive differ from the registry's: only the names are checked.
        if kind == "skopeo_oci_archive":
            self.verify_present(measurement, [self.reference(name) for name in NAMES])
        else:
            self.verify_names(measurement, self.expected_ids())

    def mirror_step(self, run: dict, index: int) -> None:
        """Time ferry mirror, skopeo copy and skopeo sync into an empty registry, then again.

        Each tool copies into a fresh registry on a new port, under a namespace named after the
        run, so no tool finds blobs another one put there and skopeo's blob info cache names no
        repository it could mount from."""
        namespace = f"run{index + 1}"
        for tool in MIRROR_TOOLS:
            self.mirror_destination = Registry(self.work / "mirror-destination")
            self.mirror_destination.start()
            registries = {"source": self.registry, "destination": self.mirror_destination}
            try:
                for case in MIRROR_CASES:
                    log(f"mirror: {tool}, {case}")
                    if case == "cold":
                        self.empty_cache()
                    result = self.counted(registries, lambda: self.mirror(tool, namespace, f"mirror-{case}-{tool}"))
                    self.verify_mirror(result, namespace)
                    run[f"mirror.{case}.{tool}"] = result
            finally:
                self.mirror_destination.stop()
                self.mirror_destination = None
        self.empty_cache()

    def mirror(self, tool: str, namespace: str, label: str) -> Measurement:
        """Copy MIRROR_IMAGES from the registry to the mirror destination with one tool."""
        source, destination = self.registry.host, self.mirror_destination.host

        if tool == "ferry":
            images = [name if tag == "latest" else f"{name}:{tag}" for name, tag in MIRROR_IMAGES]
            command = [
                str(self.ferry), "mirror", "--plain-http", source, "--plain-http", destination,
                "--registry-url", source, "--registry-env", self.prefix,
                "--to", f"{destination}/{namespace}", "--cache-dir", str(self.cache), *images,
            ]
            return self.runner.run(command, label, capture=True)

        if tool == "skopeo_copy":
            total = Measurement()
            for name, tag in MIRROR_IMAGES:
                total.add(self.runner.run([
                    "skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
                    f"docker://{self.reference(name, tag)}", f"docker://{destination}/{namespace}/{self.prefix}{name}:{tag}",
                ], label))
            return total

        # skopeo sync reads the images from a YAML file, one entry per repository with its tags,
        # and puts each repository under the destination's namespace with its source path.
        tags: dict[str, list[str]] = {}
        for name, tag in MIRROR_IMAGES:
            tags.setdefault(f"{self.prefix}{name}", []).append(tag)
        listing = self.work / "mirror-sync.yml"
        lines = [f"{source}:", "  tls-verify: false", "  images:"]
        lines += [f"    {repository}: [{', '.join(names)}]" for repository, names in tags.items()]
        listing.write_text("\n".join(lines) + "\n")
        return self.runner.run([
            "skopeo", "sync", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false",
            str(listing), f"{destination}/{namespace}",
        ], label)

    def verify_mirror(self, measurement: Measurement, namespace: str) -> None:
        """Mark the measurement failed unless each destination tag has the source's manifest digest."""
        digests = {}
        for name, tag in MIRROR_IMAGES:
            repository = f"{self.prefix}{name}"
            expected = self.registry.manifest_digest(repository, tag)
            found = self.mirror_destination.manifest_digest(f"{namespace}/{repository}", tag)
            digests[f"{repository}:{tag}"] = found
            if found != expected:
                measurement.ok = False
                measurement.error = measurement.error or f"after the step, {namespace}/{repository}:{tag} in the destination is {found or 'missing'} instead of {expected}"
        measurement.details["digests"] = digests

    def slowlink_step(self, run: dict) -> None:
        """Measure the shaped link, then warmup and save across it."""
        self.slow_ceiling(run)
        self.warmup_step(run, self.slow, "slowlink.warmup")
        self.save_step(run, self.slow, "slowlink.save", archives=self.slow_archives,
                       transports=[("oci-archive", "skopeo_oci_archive")], pull_key="slowlink.warmup.cold.docker")
        shutil.rmtree(self.slow_archives, ignore_errors=True)

    def slow_ceiling(self, run: dict) -> None:
        """curl the biggest blob across the slow link, and time the first byte of GET /v2/."""
        biggest = self.results["imageset"]["biggest_layer"]
        log("slowlink: curl of the biggest blob across the link")
        timing = ["-w", "%{time_starttransfer} %{time_total}"]
        probe = self.runner.run(["curl", "-sSf", "-o", "/dev/null", *timing, f"http://{self.slow.host}/v2/"], "slowlink-ceiling-v2", capture=True)
        url = f"http://{self.slow.host}/v2/{self.prefix}chromium/blobs/{biggest['digest']}"
        forwarder_before = process_cpu(self.forwarder.process.pid)
        result = self.with_bytes(self.runner.run(["curl", "-sSf", "-o", "/dev/null", *timing, url], "slowlink-ceiling-curl", capture=True), biggest["size"])
        # The forwarder's CPU time for this one transfer, to show what it costs per byte.
        result.details["forwarder_cpu_seconds"] = round(process_cpu(self.forwarder.process.pid) - forwarder_before, 3)
        try:
            result.details["v2_first_byte_seconds"] = float(probe.output.split()[0])
            result.details["blob_first_byte_seconds"] = float(result.output.split()[0])
        except (IndexError, ValueError):
            pass
        run["ceiling.slowlink"] = result

    def ceilings_step(self, run: dict) -> None:
        """Measure what the machine allows: loopback HTTP, sha256, gunzip and disk writes."""
        biggest = self.results["imageset"]["biggest_layer"]
        blob = Path(self.imageset["path"]) / "blobs" / "sha256" / biggest["digest"].split(":")[1]
        subprocess.run(["cat", str(blob)], stdout=subprocess.DEVNULL, check=True)
        url = f"http://{self.registry.host}/v2/{self.prefix}chromium/blobs/{biggest['digest']}"
        log("ceilings: curl, sha256sum, openssl, gzip -dc, dd")
        run["ceiling.loopback"] = self.with_bytes(self.runner.run(["curl", "-sSf", "-o", "/dev/null", url], "ceiling-curl"), biggest["size"])
        run["ceiling.sha256sum"] = self.with_bytes(self.runner.run(["sha256sum", str(blob)], "ceiling-sha256sum"), biggest["size"])
        run["ceiling.sha256_openssl"] = self.with_bytes(self.runner.run(["openssl", "dgst", "-sha256", str(blob)], "ceiling-openssl"), biggest["size"])
        gunzip = self.runner.run(["sh", "-c", f"gzip -dc '{blob}' > /dev/null"], "ceiling-gunzip")
        run["ceiling.gunzip"] = self.with_bytes(gunzip, biggest["size"])
        run["ceiling.upload"] = self.with_bytes(self.upload_ceiling(blob, biggest["digest"]), biggest["size"])
        target = self.work / "dd-test.tmp"
        disk = self.runner.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", "count=1024", "conv=fdatasync", "status=none"], "ceiling-dd")
        target.unlink(missing_ok=True)
        run["ceiling.disk"] = self.with_bytes(disk, 1024 * 1024 * 1024)

    def upload_ceiling(self, blob: Path, digest: str) -> Measurement:
        """Time curl uploading `blob` into the registry as one monolithic upload.

        The repository is new, so the registry receives and hashes every byte, as a mirror's
        destination does. The blob is already in the registry's storage, so the upload adds
        only a link to it."""
        uploads = f"http://{self.registry.host}/v2/{self.prefix}ceiling/blobs/uploads/"
        script = (
            f"location=$(curl -sSf -X POST -D - -o /dev/null '{uploads}' | tr -d '\\r' | awk 'tolower($1) == \"location:\" {{print $2}}')"
            f" && case $location in http*) ;; *) location='http://{self.registry.host}'$location ;; esac"
            f" && case $location in *\\?*) separator='&' ;; *) separator='?' ;; esac"
            f" && curl -sSf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' -T '{blob}' \"$location${{separator}}digest={digest}\""
        )
        return self.runner.run(["sh", "-c", script], "ceiling-upload")

    @staticmethod
    def with_bytes(measurement: Measurement, count: int) -> Measurement:
        measurement.bytes = count
        return measurement

    # The whole benchmark.

    def run(self) -> Path:
        self.setup()
        for index in range(self.args.runs):
            log(f"run {index + 1} of {self.args.runs}")
            run: dict[str, Measurement] = {}
            if "ceilings" in self.args.steps:
                self.ceilings_step(run)
            if "warmup" in self.args.steps:
                self.warmup_step(run, self.loopback)
            if "save" in self.args.steps:
                self.save_step(run, self.loopback)
            if "load" in self.args.steps:
                self.load_step(run)
            if "mirror" in self.args.steps:
                self.mirror_step(run, index)
            if "slowlink" in self.args.steps:
                self.slowlink_step(run)
            self.engine.remove()
            self.results["runs"].append({key: value.to_json() for key, value in run.items()})
            failures = [f"{key}: {value.error}" for key, value in run.items() if not value.ok]
            for failure in failures:
                log(f"failed {failure}")
        self.results["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.results["load_average_end"] = os.getloadavg()
        self.results["seconds_total"] = (datetime.datetime.now(datetime.timezone.utc) - self.started).total_seconds()
        return self.write_results()

    def write_results(self) -> Path:
        self.session_dir.mkdir(parents=True, exist_ok=True)
        # The raw numbers go to disk first, so a failure in the summary loses nothing.
        (self.session_dir / "results.json").write_text(json.dumps(self.results, indent=1))
        summary = report.summarize(self.results)
        self.results["summary"] = summary
        (self.session_dir / "results.json").write_text(json.dumps(self.results, indent=1))
        markdown = report.markdown(self.results)
        (self.session_dir / "results.md").write_text(markdown)
        shutil.copy(self.session_dir / "results.json", self.work / "results.json")
        shutil.copy(self.session_dir / "results.md", self.work / "results.md")
        print(markdown)
        log(f"results in {self.session_dir}/results.md and results.json (copied to {self.work})")
        return self.session_dir

    def cleanup(self) -> None:
        if self.engine is not None:
            self.engine.remove()
        for process in (self.forwarder, self.slow_registry, self.mirror_destination, self.registry):
            if process is not None:
                process.stop()
        if self.link is not None:
            self.link.destroy()
        self.empty_cache()
        for folder in (self.archives, self.slow_archives):
            if folder.exists():
                shutil.rmtree(folder)


def rewrite_report(path: Path) -> int:
    """Recompute the summary of a session's results.json, rewrite it and its results.md, and print the table."""
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        print(f"error: cannot read {path} as a session's results.json: {error}", file=sys.stderr)
        return 2
    results["summary"] = report.summarize(results)
    path.write_text(json.dumps(results, indent=1))
    markdown = report.markdown(results)
    path.with_suffix(".md").write_text(markdown)
    print(markdown)
    print(f"rewrote {path} and {path.with_suffix('.md')}", file=sys.stderr)
    return 0


def main() -> int:
    args = parse_args()
    if args.report:
        return rewrite_report(args.report)
    bench = Bench(args)

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    try:
        bench.run()
        return 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
