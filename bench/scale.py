#!/usr/bin/env python3
"""Measure registry egress and wall time of a fleet warmup, with and without a pull-through cache.

A node is one `ferry warmup --to oci:DIR` run with a cache folder of its own, so no Docker
engine is involved and nodes share nothing. The origin registry (the CNCF distribution registry,
/usr/bin/docker-registry) runs in a network namespace behind a veth pair whose download direction
is shaped with `tc ... tbf`, which stands for the WAN link that all nodes share. The pull-through
cache is a second distribution registry in `proxy` mode on 127.0.0.1, on the nodes' side of that
link. Egress is read from each registry's access log (response body bytes) and from the veth
byte counter.

For each fleet size N the script runs:
  origin      N nodes pull from the origin, at most --concurrency at once;
  cache       a fresh, empty cache; the same N runs with --registry-mirror pointing at it;
  cache-warm  a fresh, empty cache; one node alone first, then a wait until the cache has
              stored every blob, then the other N-1 (N > 1 only).

Run as root on Linux with ip, tc, skopeo and docker-registry installed. Python 3.11 stdlib only.
Every process, temporary folder and network namespace it creates is removed at the end.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import tools

REGISTRY_BINARY = "/usr/bin/docker-registry"
REPOSITORY = "scale/warmup"
TAG = "v1"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
                   "http_proxy", "https_proxy", "no_proxy", "all_proxy")
START_TIMEOUT_SECONDS = 30.0
# Combined Log Format, as distribution 2.8 writes its access log to stdout:
# 10.0.0.1 - - [date] "GET /v2/... HTTP/1.1" 200 1234 "referer" "user agent"
ACCESS_LOG_LINE = re.compile(r'^\S+ \S+ \S+ \[[^\]]*\] "(\w+) (\S+) [^"]*" (\d{3}) (\d+|-)')
MODES = ("origin", "cache", "cache-warm")
MODE_LABELS = {"origin": "no", "cache": "yes, cold", "cache-warm": "yes, filled by 1 node first"}
# How long the cache-warm mode waits for the cache to store what the first node pulled.
CACHE_FILL_TIMEOUT_SECONDS = 120.0


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return this process's environment without proxy variables, plus `extra`."""
    environment = {key: value for key, value in os.environ.items() if key not in PROXY_VARIABLES}
    environment.update(extra or {})
    return environment


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run `command`, raising with its stderr when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, env=child_environment(), **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {result.returncode}: {result.stderr.strip()}")
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- Test image --------------------------------------------------------------------------------


@dataclass
class Image:
    manifest_digest: str
    config_digest: str
    layer_digests: list[str]
    blob_bytes: int
    """Bytes of the manifest, the config and every layer: what one node downloads."""


def go_architecture() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}.get(machine, machine)


def write_blob(layout: Path, data: bytes) -> str:
    digest = sha256_hex(data)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return f"sha256:{digest}"


def make_layer_tar(index: int, size: int) -> bytes:
    """Return an uncompressed tar with one file of `size` random bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        member = tarfile.TarInfo(f"scale/layer{index}.bin")
        member.size = size
        member.mtime = 0
        member.mode = 0o644
        archive.addfile(member, io.BytesIO(os.urandom(size)))
    return buffer.getvalue()


def write_image_layout(layout: Path, layer_count: int, total_bytes: int) -> Image:
    """Write an OCI image layout with `layer_count` gzip layers of random data, tagged TAG."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    layers, diff_ids = [], []
    for index in range(layer_count):
        tar = make_layer_tar(index, total_bytes // layer_count)
        compressed = gzip.compress(tar, compresslevel=1, mtime=0)
        diff_ids.append(f"sha256:{sha256_hex(tar)}")
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": write_blob(layout, compressed), "size": len(compressed)})

    config = json.dumps({
        "architecture": go_architecture(), "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"bench/scale.py layer {index}"} for index in range(layer_count)],
    }).encode()
    config_digest = write_blob(layout, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": layers,
    }).encode()
    manifest_digest = write_blob(layout, manifest)
    index_document = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                      "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                     "digest": manifest_digest, "size": len(manifest),
                                     "annotations": {"org.opencontainers.image.ref.name": TAG}}]}
    (layout / "index.json").write_text(json.dumps(index_document))
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    blob_bytes = len(manifest) + len(config) + sum(layer["size"] for layer in layers)
    return Image(manifest_digest, config_digest, [layer["digest"] for layer in layers], blob_bytes)


# --- Registries and the WAN link ---------------------------------------------------------------


@dataclass
class RequestTotals:
    """Totals over access-log lines: body bytes of GET responses and request counts."""
    response_bytes: int = 0
    blob_get_bytes: int = 0
    blob_gets: int = 0
    manifest_requests: int = 0
    requests: int = 0
    errors: int = 0


class Registry:
    """A distribution registry process with its own storage and access log."""

    def __init__(self, work: Path, name: str, address: str, netns: str | None = None, upstream: str | None = None):
        self.dir = work / name
        self.dir.mkdir()
        self.name = name
        self.address = address
        self.netns = netns
        self.upstream = upstream
        self.log_path = self.dir / "registry.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> None:
        config = (
            "version: 0.1\n"
            "log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {json.dumps(str(self.dir / 'storage'))}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.address}\n  secret: scale-{secrets.token_hex(8)}\n"
        )
        if self.upstream:
            config += f"proxy:\n  remoteurl: {self.upstream}\n"
        (self.dir / "config.yml").write_text(config)

        command = [REGISTRY_BINARY, "serve", str(self.dir / "config.yml")]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]
        with open(self.log_path, "ab") as output:
            # `ip netns exec` replaces itself with the registry, so this is the registry's PID.
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                            cwd=self.dir, env=child_environment())
        self.wait_ready()

    def wait_ready(self) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} registry exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                opener.open(f"{self.url}/v2/", timeout=1).close()
                return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} registry timed out: no response to GET {self.url}/v2/ within {START_TIMEOUT_SECONDS} s; see {self.log_path}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def has_blob(self, digest: str) -> bool:
        """Return whether the filesystem storage has the committed blob (its `data` file)."""
        hex_digest = digest.removeprefix("sha256:")
        return (self.dir / "storage" / "docker" / "registry" / "v2" / "blobs" / "sha256"
                / hex_digest[:2] / hex_digest / "data").exists()

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def totals_since(self, offset: int) -> RequestTotals:
        """Add up the access-log lines written after byte `offset` of the log."""
        totals = RequestTotals()
        with open(self.log_path, "rb") as handle:
            handle.seek(offset)
            for raw in handle:
                match = ACCESS_LOG_LINE.match(raw.decode("utf-8", "replace"))
                if not match:
                    continue
                method, path, status, size = match.group(1), match.group(2), int(match.group(3)), match.group(4)
                body = 0 if size == "-" else int(size)
                totals.requests += 1
                # The log also gives a size for HEAD responses although no body is sent.
                if method == "GET":
                    totals.response_bytes += body
                if status >= 400:
                    totals.errors += 1
                if "/blobs/" in path and method == "GET":
                    totals.blob_gets += 1
                    totals.blob_get_bytes += body
                if "/manifests/" in path:
                    totals.manifest_requests += 1
        return totals


class Wan:
    """A network namespace for the origin, joined to the host by a veth pair whose
    namespace-to-host direction (the nodes' downloads) is shaped with a token bucket filter."""

    def __init__(self, rate_bits: int):
        suffix = os.getpid()
        self.rate_bits = rate_bits
        self.netns = f"ferry-scale-{suffix}"
        self.host_link = f"fsc{suffix}h"
        self.netns_link = f"fsc{suffix}n"
        self.host_address, self.origin_address = "", ""
        self.created_netns = False
        self.created_link = False

    @staticmethod
    def pick_subnet() -> tuple[str, str]:
        """Return two addresses of a /30 in 10.251.0.0/16 that no interface uses."""
        used = run(["ip", "-4", "-o", "addr"]).stdout
        for _ in range(50):
            third = secrets.randbelow(256)
            if f"10.251.{third}." not in used:
                return f"10.251.{third}.1", f"10.251.{third}.2"
        raise RuntimeError("no free /30 found in 10.251.0.0/16")

    def create(self) -> None:
        self.host_address, self.origin_address = self.pick_subnet()
        run(["ip", "netns", "add", self.netns])
        self.created_netns = True
        run(["ip", "link", "add", self.host_link, "type", "veth", "peer", "name", self.netns_link])
        self.created_link = True
        run(["ip", "link", "set", self.netns_link, "netns", self.netns])
        run(["ip", "addr", "add", f"{self.host_address}/30", "dev", self.host_link])
        run(["ip", "link", "set", self.host_link, "up"])
        run(["ip", "-n", self.netns, "addr", "add", f"{self.origin_address}/30", "dev", self.netns_link])
        run(["ip", "-n", self.netns, "link", "set", self.netns_link, "up"])
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        # The bucket size is 10 ms of traffic (at least 32 KiB), enough for the rate at a 100 Hz
        # timer. The latency bounds the queue, so many parallel streams see drops as on a
        # congested link.
        burst = max(self.rate_bits // 8 // 100, 32 * 1024)
        run(["ip", "netns", "exec", self.netns, "tc", "qdisc", "add", "dev", self.netns_link, "root",
             "tbf", "rate", f"{self.rate_bits}bit", "burst", str(burst), "latency", "100ms"])

    def received_bytes(self) -> int:
        """Bytes the host received over the link (IP packets, headers included)."""
        return int(Path(f"/sys/class/net/{self.host_link}/statistics/rx_bytes").read_text())

    def destroy(self) -> None:
        if self.created_netns:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        if self.created_link and Path(f"/sys/class/net/{self.host_link}").exists():
            subprocess.run(["ip", "link", "del", self.host_link], capture_output=True)


def settle(paths: list[Path], counter=None, quiet_seconds: float = 1.0, timeout: float = 30.0) -> None:
    """Wait until the registries' logs and `counter()` are quiet, warning when they never are."""
    if not tools.settle(paths, counter, quiet_seconds=quiet_seconds, timeout=timeout):
        log(f"WARNING: logs or link still active after {timeout} s; totals may be incomplete")


# --- Nodes -------------------------------------------------------------------------------------


@dataclass
class NodeResult:
    index: int
    exit_code: int
    seconds: float
    error: str = ""


@dataclass
class Fleet:
    ferry: Path
    image: Image
    origin: Registry
    concurrency: int
    node_rate: str | None
    work: Path
    docker_config: Path = field(init=False)

    def __post_init__(self):
        # An empty Docker config folder, so no credentials of the machine's user are read.
        self.docker_config = self.work / "docker-config"
        self.docker_config.mkdir(exist_ok=True)

    def node_command(self, node_dir: Path, mirror: str | None) -> list[str]:
        reference = f"{self.origin.address}/{REPOSITORY}:{TAG}"
        command = [str(self.ferry), "warmup", "--plain-http", self.origin.address, "--warmup", reference,
                   "--to", f"oci:{node_dir / 'layout'}", "--json", "--quiet"]
        if mirror:
            command += ["--registry-mirror", mirror]
        if self.node_rate:
            command += ["--limit-rate", self.node_rate]
        return command

    def run_nodes(self, indexes: list[int], nodes_dir: Path, mirror: str | None) -> list[NodeResult]:
        """Run one node per index, at most `concurrency` at once (a new one starts when one ends)."""
        pending = list(indexes)
        running: dict[int, tuple[subprocess.Popen, float]] = {}
        results = []
        try:
            while pending or running:
                while pending and len(running) < self.concurrency:
                    index = pending.pop(0)
                    node_dir = nodes_dir / f"node{index:03d}"
                    node_dir.mkdir()
                    environment = child_environment({"FERRY_CACHE_DIR": str(node_dir / "cache"),
                                                     "DOCKER_CONFIG": str(self.docker_config)})
                    started = time.monotonic()
                    with open(node_dir / "stdout.json", "wb") as stdout, open(node_dir / "stderr.log", "wb") as stderr:
                        process = subprocess.Popen(self.node_command(node_dir, mirror), stdin=subprocess.DEVNULL,
                                                   stdout=stdout, stderr=stderr, env=environment)
                    running[index] = (process, started)
                time.sleep(0.02)
                for index, (process, started) in list(running.items()):
                    if process.poll() is not None:
                        del running[index]
                        results.append(self.check_node(index, nodes_dir / f"node{index:03d}",
                                                       process.returncode, time.monotonic() - started))
        finally:
            for process, _ in running.values():
                process.kill()
                process.wait()
        return results

    def check_node(self, index: int, node_dir: Path, exit_code: int, seconds: float) -> NodeResult:
        """Check that the node's layout has the image with the expected digest and every layer."""
        error = ""
        try:
            document = json.loads((node_dir / "stdout.json").read_text())
            image = document["images"][0]
            if exit_code != 0 or image.get("status") != "changed":
                error = f"exit code {exit_code}, status {image.get('status')}: {image.get('error')}"
            elif image.get("digest") != self.image.manifest_digest:
                error = f"digest {image.get('digest')}, expected {self.image.manifest_digest}"
            else:
                missing = [digest for digest in self.image.layer_digests
                           if not (node_dir / "layout" / "blobs" / "sha256" / digest.removeprefix("sha256:")).exists()]
                if missing:
                    error = f"layers missing from the layout: {missing}"
        except (OSError, ValueError, KeyError, IndexError) as exception:
            stderr = (node_dir / "stderr.log").read_text(errors="replace").strip()
            error = f"exit code {exit_code}, no valid JSON output ({exception}): {stderr[-500:]}"
        return NodeResult(index, exit_code, seconds, error)


# --- Scenarios ---------------------------------------------------------------------------------


def wait_for_blobs(cache: Registry, digests: list[str]) -> None:
    """Wait until `cache` has stored every blob of `digests`, at most CACHE_FILL_TIMEOUT_SECONDS."""
    deadline = time.monotonic() + CACHE_FILL_TIMEOUT_SECONDS
    while not all(cache.has_blob(digest) for digest in digests):
        if time.monotonic() > deadline:
            log(f"WARNING: the cache has not stored every blob after {CACHE_FILL_TIMEOUT_SECONDS} s; starting the other nodes anyway")
            return
        time.sleep(0.05)


def run_scenario(fleet: Fleet, wan: Wan | None, nodes: int, mode: str, upstream: str) -> dict:
    """Run one fleet size in one mode and return its measurements."""
    scenario_dir = Path(tempfile.mkdtemp(prefix=f"n{nodes}-{mode}-", dir=fleet.work))
    cache = None
    try:
        if mode != "origin":
            cache = Registry(scenario_dir, "cache", f"127.0.0.1:{free_port()}", upstream=upstream)
            cache.start()
        mirror = cache.url if cache else None
        logs = [fleet.origin.log_path] + ([cache.log_path] if cache else [])
        counter = wan.received_bytes if wan else None
        settle(logs, counter, quiet_seconds=0.5)

        origin_offset = fleet.origin.log_size()
        cache_offset = cache.log_size() if cache else 0
        wan_before = wan.received_bytes() if wan else 0
        nodes_dir = scenario_dir / "nodes"
        nodes_dir.mkdir()

        log(f"N={nodes} {mode}: starting")
        started = time.monotonic()
        first_node_seconds, cache_filled_seconds = None, None
        if mode == "cache-warm":
            results = fleet.run_nodes([0], nodes_dir, mirror)
            first_node_seconds = time.monotonic() - started
            # The cache streams a new blob to its client and stores it with a second, separate
            # download, which can end after the client's. A node that requests the blob before
            # the store ends gets another download from the origin.
            wait_for_blobs(cache, [fleet.image.config_digest, *fleet.image.layer_digests])
            cache_filled_seconds = time.monotonic() - started
            results += fleet.run_nodes(list(range(1, nodes)), nodes_dir, mirror)
        else:
            results = fleet.run_nodes(list(range(nodes)), nodes_dir, mirror)
        wall = time.monotonic() - started

        settle(logs, counter)
        origin_totals = fleet.origin.totals_since(origin_offset)
        cache_totals = cache.totals_since(cache_offset) if cache else None
        failures = [result for result in results if result.error]
        for failure in failures[:3]:
            log(f"node {failure.index} failed: {failure.error}")
        seconds = sorted(result.seconds for result in results)
        measurement = {
            "nodes": nodes,
            "mode": mode,
            "cache": mode != "origin",
            "wall_seconds": round(wall, 2),
            "first_node_seconds": round(first_node_seconds, 2) if first_node_seconds is not None else None,
            "cache_filled_seconds": round(cache_filled_seconds, 2) if cache_filled_seconds is not None else None,
            "node_seconds_median": round(statistics.median(seconds), 2),
            "node_seconds_max": round(seconds[-1], 2),
            "node_seconds": [round(value, 2) for value in seconds],
            "failed_nodes": len(failures),
            "origin": origin_totals.__dict__,
            "cache_egress": cache_totals.__dict__ if cache_totals else None,
            "wan_received_bytes": wan.received_bytes() - wan_before if wan else None,
        }
        log(f"N={nodes} {mode}: {wall:.1f} s, origin {origin_totals.response_bytes / 1e6:.1f} MB "
            f"in {origin_totals.blob_gets} blob GETs, {len(failures)} failed")
        return measurement
    finally:
        if cache:
            cache.stop()
        shutil.rmtree(scenario_dir, ignore_errors=True)


def megabytes(count: int | None) -> str:
    return "-" if count is None else f"{count / 1e6:,.1f} MB"


def markdown_table(results: list[dict], image_bytes: int) -> str:
    lines = [
        "| N | cache | wall time | origin egress | origin blob GETs | cache egress | WAN bytes received | node time median / max | failed |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        origin = result["origin"]
        cache = result["cache_egress"]
        ratio = origin["response_bytes"] / image_bytes
        lines.append(
            f"| {result['nodes']} | {MODE_LABELS[result['mode']]} | {result['wall_seconds']:.1f} s "
            f"| {megabytes(origin['response_bytes'])} ({ratio:.1f} S) | {origin['blob_gets']} "
            f"| {megabytes(cache['response_bytes']) if cache else '-'} "
            f"| {megabytes(result['wan_received_bytes'])} "
            f"| {result['node_seconds_median']:.1f} / {result['node_seconds_max']:.1f} s | {result['failed_nodes']} |"
        )
    return "\n".join(lines)


def find_ferry(argument: str | None) -> Path:
    candidates = [argument, os.environ.get("FERRY_BIN"),
                  os.environ.get("CARGO_TARGET_DIR") and os.path.join(os.environ["CARGO_TARGET_DIR"], "release", "ferry"),
                  str(Path(__file__).resolve().parents[1] / "target" / "release" / "ferry")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate).resolve()
    raise SystemExit("ferry binary not found: pass --ferry PATH, set FERRY_BIN, or run `cargo build --release`")


def parse_rate(parser: argparse.ArgumentParser, text: str) -> int:
    """Return a tc rate such as 100mbit in bits per second (tc's units: k, m, g are powers of 1000)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(kbit|mbit|gbit)", text.lower())
    if not match:
        parser.error(f"invalid --wan-rate {text!r}: expected a number with kbit, mbit or gbit, such as 100mbit, or none")
    multiplier = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[match.group(2)]
    return int(float(match.group(1)) * multiplier)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,10,100", help="fleet sizes, comma-separated (default: 1,10,100)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"scenarios, comma-separated, from {', '.join(MODES)}")
    parser.add_argument("--concurrency", type=int, default=10, help="nodes running at once (default: 10)")
    parser.add_argument("--image-mb", type=float, default=30.0, help="random data in the test image, in MB (default: 30)")
    parser.add_argument("--layers", type=int, default=3, help="layers in the test image (default: 3)")
    parser.add_argument("--wan-rate", default="100mbit",
                        help="tc rate of the origin's link, such as 100mbit, or `none` for an unshaped loopback origin (default: 100mbit)")
    parser.add_argument("--node-rate", help="--limit-rate passed to every node, such as 2M (default: none)")
    parser.add_argument("--ferry", help="ferry binary (default: $FERRY_BIN, else $CARGO_TARGET_DIR or target/release/ferry)")
    parser.add_argument("--json", default="scale-results.json", help="file the results are written to (default: scale-results.json)")
    arguments = parser.parse_args()
    arguments.nodes = [int(value) for value in arguments.nodes.split(",")]
    arguments.modes = arguments.modes.split(",")
    arguments.wan_rate_text = arguments.wan_rate
    arguments.wan_rate = None if arguments.wan_rate == "none" else parse_rate(parser, arguments.wan_rate)
    unknown = set(arguments.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode {', '.join(sorted(unknown))}: expected {', '.join(MODES)}")
    if arguments.concurrency < 1 or any(count < 1 for count in arguments.nodes):
        parser.error("--concurrency and every --nodes value must be at least 1")
    return arguments


def machine_description() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "registry": run([REGISTRY_BINARY, "--version"]).stdout.strip()}


def raise_interrupt(signal_number, frame) -> None:
    """Turn SIGTERM into KeyboardInterrupt, so the cleanup in main() runs as for Ctrl-C."""
    raise KeyboardInterrupt(f"signal {signal_number}")


def main() -> int:
    arguments = parse_arguments()
    ferry = find_ferry(arguments.ferry)
    if os.geteuid() != 0 and arguments.wan_rate is not None:
        raise SystemExit("--wan-rate needs root for ip netns and tc; run as root or pass --wan-rate none")

    signal.signal(signal.SIGTERM, raise_interrupt)
    work = Path(tempfile.mkdtemp(prefix="ferry-scale-"))
    wan, origin = None, None
    try:
        log(f"writing a {arguments.image_mb:g} MB test image with {arguments.layers} layers")
        image = write_image_layout(work / "image", arguments.layers, int(arguments.image_mb * 1e6))

        shaping = "none: origin on 127.0.0.1"
        if arguments.wan_rate is not None:
            wan = Wan(arguments.wan_rate)
            try:
                wan.create()
                shaping = f"tc tbf {arguments.wan_rate_text} on a veth pair into a network namespace (download direction)"
            except (RuntimeError, OSError) as error:
                log(f"WARNING: network namespace or tc failed, so the origin runs unshaped on 127.0.0.1: {error}")
                wan.destroy()
                wan = None
                shaping = f"none: netns or tc setup failed ({error})"
        origin_address = f"{wan.origin_address}:5000" if wan else f"127.0.0.1:{free_port()}"
        origin = Registry(work, "origin", origin_address, netns=wan.netns if wan else None)
        origin.start()
        run(["skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
             f"oci:{work / 'image'}:{TAG}", f"docker://{origin_address}/{REPOSITORY}:{TAG}"])
        shutil.rmtree(work / "image")
        log(f"origin {origin.url} has {REPOSITORY}:{TAG}, {image.blob_bytes:,} bytes; link: {shaping}")

        fleet = Fleet(ferry, image, origin, arguments.concurrency, arguments.node_rate, work)
        results = []
        for nodes in arguments.nodes:
            for mode in arguments.modes:
                if mode == "cache-warm" and nodes == 1:
                    continue
                results.append(run_scenario(fleet, wan, nodes, mode, origin.url))

        document = {
            "machine": machine_description(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "ferry": str(ferry),
            "image_bytes": image.blob_bytes,
            "layers": arguments.layers,
            "concurrency": arguments.concurrency,
            "wan": shaping,
            "node_rate": arguments.node_rate,
            "results": results,
        }
        Path(arguments.json).write_text(json.dumps(document, indent=2) + "\n")
        print(f"Image S = {image.blob_bytes / 1e6:.1f} MB ({arguments.layers} layers), "
              f"{arguments.concurrency} nodes at once, WAN link: {shaping}.\n")
        print(markdown_table(results, image.blob_bytes))
        log(f"results written to {arguments.json}")
        return 0 if all(result["failed_nodes"] == 0 for result in results) else 1
    finally:
        if origin:
            origin.stop()
        if wan:
            wan.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as interrupt:
        log(f"interrupted ({interrupt or 'Ctrl-C'}); processes, folders and the namespace were removed")
        sys.exit(130)
