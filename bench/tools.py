"""Processes the benchmark drives: timed commands, registries, the shaped link and the Docker engine.

Run as a script, `python3 tools.py forward LISTEN TARGET DELAY` forwards TCP connections from
LISTEN (host:port) to TARGET (host:port) and adds DELAY seconds in each direction. The slow-link
step runs it to put the shaped link on every client's path.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

REGISTRY_BIN = "/usr/bin/docker-registry"

# GNU time runs each timed command and writes its peak RSS (%M, KiB) to a file. wait4 alone
# cannot give it, because Linux counts in a child's ru_maxrss the memory of the process it was
# forked from, up to its exec. Every child of this Python process would report at least the
# bench's own peak RSS. GNU time is small, so the floor it leaves is about 2 MiB.
TIME_BIN = "/usr/bin/time"

# Variables ferry reads its settings from; they are removed so the flags alone apply.
FERRY_SETTINGS_VARIABLES = (
    "REGISTRY_URL", "REGISTRY_ENV", "REGISTRY_USERNAME", "REGISTRY_PASSWORD",
    "PROVISION_IMAGE_WARMUP", "PROVISION_IMAGE_ARCHIVES", "FERRY_CACHE_DIR", "FERRY_LOG",
)


@dataclass
class Measurement:
    """One timed command or sequence of commands."""

    seconds: float = 0.0
    ok: bool = True
    error: str = ""
    # Peak resident set size of the command in bytes, as GNU time reports it (the largest one for
    # a sequence).
    max_rss: int = 0
    # User plus system CPU time of the command and the children it waited for, in seconds.
    cpu: float = 0.0
    # CPU time dockerd used meanwhile, with the children it waited for, in seconds.
    dockerd_cpu: float = 0.0
    commands: list[str] = field(default_factory=list)
    output: str = ""
    # Lines the command wrote to stderr, with the seconds since it started.
    events: list[tuple[float, str]] = field(default_factory=list)
    # Size in bytes of the archives a step wrote or read.
    size: int | None = None
    # Bytes a ceiling command processed: compressed bytes in, for gzip -dc.
    bytes: int | None = None
    # Requests each registry received meanwhile, by role ("source", "destination"), as
    # Registry.requests_since returns them.
    requests: dict | None = None
    # Other numbers of the command, such as curl's time to the first byte.
    details: dict = field(default_factory=dict)

    def add(self, other: "Measurement") -> None:
        self.seconds += other.seconds
        self.ok = self.ok and other.ok
        self.error = self.error or other.error
        self.max_rss = max(self.max_rss, other.max_rss)
        self.cpu += other.cpu
        self.dockerd_cpu += other.dockerd_cpu
        offset = self.seconds - other.seconds
        self.events += [(offset + moment, line) for moment, line in other.events]
        self.commands += other.commands
        self.output += other.output

    def to_json(self) -> dict:
        document = asdict(self)
        document["output"] = self.output[-4000:]
        return document


class Runner:
    """Runs commands with their stdout and stderr in a log file, measuring time and rusage."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.dockerd_pid = find_dockerd()
        self.env = {k: v for k, v in os.environ.items() if k not in FERRY_SETTINGS_VARIABLES}

    def run(self, command: list[str], label: str, capture: bool = False) -> Measurement:
        """Run command, timing it; with capture, keep its stdout and timestamp its stderr lines."""
        self.count += 1

        log_path = self.log_dir / f"{self.count:03d}-{label}.log"
        out_path = self.log_dir / f"{self.count:03d}-{label}.out"
        rss_path = self.log_dir / f"{self.count:03d}-{label}.rss"
        printable = " ".join(command)
        timed = [TIME_BIN, "--quiet", "--format", "%M", "--output", str(rss_path), *command]
        events: list[tuple[float, str]] = []

        with open(log_path, "wb") as log, open(out_path, "wb") as out:
            log.write(f"$ {printable}\n".encode())
            log.flush()
            dockerd_before = process_cpu(self.dockerd_pid)
            start = time.monotonic()
            process = subprocess.Popen(timed, stdout=out if capture else log, stderr=subprocess.PIPE if capture else log, stdin=subprocess.DEVNULL, env=self.env)
            reader = None
            if capture:
                reader = threading.Thread(target=read_events, args=(process.stderr, start, log, events))
                reader.start()
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.monotonic() - start
            process.returncode = os.waitstatus_to_exitcode(status)
            dockerd_after = process_cpu(self.dockerd_pid)
            if reader is not None:
                reader.join()
                process.stderr.close()

        output = out_path.read_text(errors="replace") if capture else ""
        if not capture:
            out_path.unlink()
        try:
            max_rss = int(rss_path.read_text().split()[-1]) * 1024
        except (OSError, ValueError, IndexError):
            max_rss = 0
        rss_path.unlink(missing_ok=True)
        measurement = Measurement(
            seconds=seconds,
            max_rss=max_rss,
            cpu=usage.ru_utime + usage.ru_stime,
            dockerd_cpu=max(0.0, dockerd_after - dockerd_before),
            commands=[printable],
            output=output,
            events=events,
        )
        if process.returncode != 0:
            measurement.ok = False
            measurement.error = f"{command[0]} {command[1] if len(command) > 1 else ''} exited with {process.returncode}: {tail(log_path)}"
        return measurement

    def check(self, command: list[str], label: str) -> str:
        """Run a setup command that must succeed; return its stdout."""
        result = self.run(command, label, capture=True)
        if not result.ok:
            raise RuntimeError(result.error)
        return result.output


def read_events(stream, start: float, log, events: list) -> None:
    for raw in stream:
        moment = time.monotonic() - start
        line = raw.decode(errors="replace").rstrip()
        events.append((round(moment, 3), line))
        log.write(f"[+{moment:8.3f}s] {line}\n".encode())
        log.flush()


def tail(path: Path, lines: int = 3) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:])[-600:]


def find_dockerd() -> int | None:
    for candidate in ("/var/run/docker.pid", "/run/docker.pid"):
        try:
            return int(Path(candidate).read_text().strip())
        except (OSError, ValueError):
            continue
    try:
        return int(subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()[0])
    except (IndexError, ValueError, OSError):
        return None


def process_cpu(pid: int | None) -> float:
    """Return the CPU time of a process and its waited-for children in seconds (0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields after the command name: state is index 0, utime 11, stime 12, cutime 13, cstime 14.
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Opens URLs without the proxies of the environment: every registry is local.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Combined Log Format, as distribution 2.8 writes its access log to stdout, one line per request:
# 10.0.0.1 - - [date] "GET /v2/... HTTP/1.1" 200 1234 "referer" "user agent"
ACCESS_LOG_LINE = re.compile(r'^\S+ \S+ \S+ \[[^\]]*\] "(\w+) (\S+) [^"]*" (\d{3}) (\d+|-)')
REQUEST_KINDS = ("manifest", "blob", "upload", "other")


def request_kind(path: str) -> str:
    """Return the kind of a registry API path: manifest, blob, upload or other (/v2/, tags)."""
    path = path.split("?", 1)[0]
    if "/blobs/uploads/" in path or path.endswith("/blobs/uploads"):
        return "upload"
    if "/blobs/" in path:
        return "blob"
    if "/manifests/" in path:
        return "manifest"
    return "other"


def count_requests(lines) -> dict:
    """Count access-log lines by kind and method, with the status codes and GET body bytes."""
    counts: dict = {kind: {} for kind in REQUEST_KINDS}
    statuses: dict[str, int] = {}
    total, body_bytes = 0, 0
    for line in lines:
        match = ACCESS_LOG_LINE.match(line)
        if not match:
            continue
        method, path, status, size = match.groups()
        kind = request_kind(path)
        counts[kind][method] = counts[kind].get(method, 0) + 1
        statuses[status] = statuses.get(status, 0) + 1
        total += 1
        # The log gives a size for HEAD responses too, although no body is sent.
        if method == "GET" and size != "-":
            body_bytes += int(size)
    return {"total": total, "kinds": counts, "statuses": statuses, "get_bytes": body_bytes}


class Registry:
    """The CNCF distribution registry over plain HTTP, its access log in the folder's registry.log.

    By default it listens on a free port of 127.0.0.1 and stores in FOLDER/storage, which start()
    empties and stop() deletes. With `storage`, it serves that folder of another registry in
    read-only mode and never deletes it. With `netns`, it runs in that network namespace."""

    def __init__(self, folder: Path, address: str | None = None, netns: str | None = None, storage: Path | None = None):
        self.folder = folder
        self.host = address or f"127.0.0.1:{free_port()}"
        self.port = int(self.host.rsplit(":", 1)[1])
        self.netns = netns
        self.read_only = storage is not None
        self.storage = storage or folder / "storage"
        self.log_path = folder / "registry.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.read_only:
            if self.storage.exists():
                shutil.rmtree(self.storage)
            self.storage.mkdir(parents=True)
        maintenance = "    readonly:\n      enabled: true\n" if self.read_only else ""
        config = self.folder / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            f"  maintenance:\n    uploadpurging:\n      enabled: false\n{maintenance}"
            f"http:\n  addr: {self.host}\n  secret: ferrybench-{secrets.token_hex(8)}\n"
        )
        command = [REGISTRY_BIN, "serve", str(config)]
        if self.netns:
            # `ip netns exec` replaces itself with the registry, so the PID is the registry's.
            command = ["ip", "netns", "exec", self.netns, *command]
        # The log starts empty: request counts are read from byte offsets into it.
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the registry exited with {self.process.returncode}; see {self.log_path}")
            try:
                with DIRECT.open(f"http://{self.host}/v2/", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the registry did not respond on {self.host} within 30 s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if not self.read_only and self.storage.exists():
            shutil.rmtree(self.storage)

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def requests_since(self, offset: int) -> dict:
        """Count the requests of the access-log lines written after byte `offset` of the log."""
        with open(self.log_path, "rb") as handle:
            handle.seek(offset)
            return count_requests(raw.decode("utf-8", "replace") for raw in handle)

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        """Return the Docker-Content-Digest of a HEAD request for the manifest, None if missing."""
        request = urllib.request.Request(f"http://{self.host}/v2/{repository}/manifests/{tag}", method="HEAD", headers={"Accept": MANIFEST_TYPES})
        try:
            with DIRECT.open(request, timeout=30) as response:
                return response.headers.get("Docker-Content-Digest")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise


# Every manifest and index type, so a HEAD request returns the stored document's digest.
MANIFEST_TYPES = ",".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])


def settle(paths: list[Path], counter=None, quiet_seconds: float = 0.3, timeout: float = 10.0) -> bool:
    """Wait until no file of `paths` has grown, and `counter()` has not changed, for `quiet_seconds`.

    A registry writes a request's access-log line after the response, and a pull-through cache
    may still store a blob after its client finished, so a count read right after the client
    exits can miss the last lines. Returns False when the timeout passed first."""
    def snapshot():
        sizes = [path.stat().st_size if path.exists() else 0 for path in paths]
        return sizes + ([counter()] if counter else [])

    deadline = time.monotonic() + timeout
    last, quiet_since = snapshot(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        current = snapshot()
        if current != last:
            last, quiet_since = current, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_seconds:
            return True
    return False


class Engine:
    """The images this session put into the Docker engine, and their removal.

    Ownership rests on image IDs: every image config of the session carries its run ID as a
    label, so no image of anyone else has the same ID. Tags are removed only when they contain
    the session's unique repository prefix."""

    def __init__(self, image_ids: list[str], prefix: str):
        self.image_ids = image_ids
        self.prefix = prefix

    def present_ids(self) -> list[str]:
        result = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", *self.image_ids], capture_output=True, text=True)
        return [line.strip() for line in result.stdout.splitlines() if line.strip()]

    def image_id(self, reference: str) -> str | None:
        result = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", reference], capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    def remove(self, image_ids: list[str] | None = None) -> None:
        """Remove this session's images (all of them, or those listed) and their layers."""
        for image_id in self.present_ids():
            if image_ids is None or image_id in image_ids:
                subprocess.run(["docker", "rmi", "-f", image_id], capture_output=True, text=True)
        if image_ids is None:
            self.remove_stray_tags()

    def remove_stray_tags(self) -> None:
        listing = subprocess.run(["docker", "images", "--format", "{{json .}}"], capture_output=True, text=True).stdout
        for line in listing.splitlines():
            image = json.loads(line)
            repository = image.get("Repository", "")
            if self.prefix in repository:
                subprocess.run(["docker", "rmi", f"{repository}:{image.get('Tag', '')}"], capture_output=True, text=True)


# The shaped link.

def parse_rate(text: str) -> int:
    """Return a tc rate such as 200mbit in bits per second (k, m and g are powers of 1000)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(kbit|mbit|gbit)", text.strip().lower())
    if not match:
        raise ValueError(f"invalid rate {text!r}: expected a number with kbit, mbit or gbit, such as 200mbit")
    return int(float(match.group(1)) * {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[match.group(2)])


def parse_delay(text: str) -> float:
    """Return a tc delay such as 25ms or 0.1s in seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(us|ms|s)", text.strip().lower())
    if not match:
        raise ValueError(f"invalid delay {text!r}: expected a number with us, ms or s, such as 25ms")
    return float(match.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[match.group(2)]


def ip(*arguments: str) -> str:
    result = subprocess.run(["ip", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(arguments)} failed with exit code {result.returncode}: {result.stderr.strip()}")
    return result.stdout


class ShapedLink:
    """A network namespace joined to the host by a veth pair with `tc tbf` on both ends.

    Each end sends at most `rate_bits` per second. Forwarder adds the delay instead of netem,
    because the kernels the bench runs on may lack netem (CONFIG_NET_SCH_NETEM)."""

    # Traffic that tbf queues, in seconds at the rate, before it drops packets.
    QUEUE_SECONDS = 0.05

    def __init__(self, name: str, rate_bits: int):
        self.netns = f"ferrybench-{name}"
        self.host_link = f"fb{name}h"[:15]
        self.netns_link = f"fb{name}n"[:15]
        self.rate_bits = rate_bits
        self.host_address = self.netns_address = ""
        self.created_netns = self.created_link = False

    @staticmethod
    def pick_subnet() -> tuple[str, str]:
        """Return two addresses of a /30 in 10.252.0.0/16 that no interface uses."""
        used = ip("-4", "-o", "addr")
        for _ in range(50):
            third = secrets.randbelow(256)
            if f"10.252.{third}." not in used:
                return f"10.252.{third}.1", f"10.252.{third}.2"
        raise RuntimeError("no free /30 found in 10.252.0.0/16")

    def tbf_arguments(self) -> list[str]:
        # The bucket takes 10 ms of traffic (at least 64 KiB), enough for a 100 Hz timer.
        burst = max(self.rate_bits // 8 // 100, 64 * 1024)
        return ["tbf", "rate", f"{self.rate_bits}bit", "burst", str(burst), "latency", f"{self.QUEUE_SECONDS * 1000:g}ms"]

    def create(self) -> None:
        self.host_address, self.netns_address = self.pick_subnet()
        ip("netns", "add", self.netns)
        self.created_netns = True
        ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.netns_link)
        self.created_link = True
        ip("link", "set", self.netns_link, "netns", self.netns)
        ip("addr", "add", f"{self.host_address}/30", "dev", self.host_link)
        ip("link", "set", self.host_link, "up")
        ip("-n", self.netns, "addr", "add", f"{self.netns_address}/30", "dev", self.netns_link)
        ip("-n", self.netns, "link", "set", self.netns_link, "up")
        ip("-n", self.netns, "link", "set", "lo", "up")
        for prefix, link in ((["tc"], self.host_link), (["ip", "netns", "exec", self.netns, "tc"], self.netns_link)):
            command = [*prefix, "qdisc", "replace", "dev", link, "root", *self.tbf_arguments()]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed with exit code {result.returncode}: {result.stderr.strip()}")

    def describe(self) -> str:
        return f"tc qdisc {' '.join(self.tbf_arguments())} on both ends of a veth pair into network namespace {self.netns}"

    def destroy(self) -> None:
        # Deleting the namespace deletes its veth end, and with it the host's end.
        if self.created_netns:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
            self.created_netns = False
        if self.created_link and Path(f"/sys/class/net/{self.host_link}").exists():
            subprocess.run(["ip", "link", "del", self.host_link], capture_output=True)
        self.created_link = False


class Forwarder:
    """A TCP forwarder from 127.0.0.1:PORT to a target host:port that adds a one-way delay.

    The Docker engine reaches a plain-HTTP registry without configuration only on 127.0.0.0/8,
    so clients connect to the forwarder, which connects across the shaped link. The forwarder
    opens each upstream connection one round trip (twice `delay`) after the client connected,
    as a TCP handshake across the link would take. It then writes every chunk it reads `delay`
    later, in each direction, so each request and response gets the latency of the link.

    NOTE: TCP's slow start across a long round trip is not reproduced, because the kernel's
    connection across the veth pair has a round trip under 1 ms."""

    def __init__(self, target: str, delay_seconds: float, log_path: Path):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.target = target
        self.delay_seconds = delay_seconds
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [sys.executable, "-B", str(Path(__file__).resolve()), "forward", self.host, self.target, str(self.delay_seconds)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the forwarder exited with {self.process.returncode}; see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the forwarder did not listen on {self.host} within 10 s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


FORWARD_CHUNK = 256 * 1024
# Chunks read but not yet written, per direction of a connection. The shaped link bounds the
# rate, so the queue contains about rate x delay bytes. The bound stops a fast loopback sender.
FORWARD_QUEUE_CHUNKS = 256


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader to writer, each chunk `delay` seconds after it was read, then half-close."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(FORWARD_QUEUE_CHUNKS)

    async def read() -> None:
        try:
            while data := await reader.read(FORWARD_CHUNK):
                await queue.put((loop.time() + delay, data))
        except (ConnectionError, OSError):
            pass
        # An empty chunk marks the end of the stream, or a dropped connection.
        await queue.put((loop.time() + delay, b""))

    async def write() -> None:
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            writer.transport.abort()

    reading = asyncio.create_task(read())
    await write()
    reading.cancel()


async def forward(listen: str, target: str, delay: float) -> None:
    """Accept connections on `listen` and copy each one both ways to a new connection to `target`."""
    target_host, target_port = target.rsplit(":", 1)

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(2 * delay)
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, int(target_port))
        except OSError as error:
            print(f"forward: connecting to {target} failed: {error}", file=sys.stderr, flush=True)
            client_writer.transport.abort()
            return
        # Clients such as Go's net/http disable Nagle's algorithm, and so does the forwarder,
        # so it adds no delay of its own to small writes.
        for writer in (client_writer, server_writer):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pipe(client_reader, server_writer, delay), pipe(server_reader, client_writer, delay))
        for writer in (client_writer, server_writer):
            writer.close()

    listen_host, listen_port = listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, listen_host, int(listen_port), reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "forward":
        sys.exit("usage: tools.py forward LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_SECONDS")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    asyncio.run(forward(sys.argv[2], sys.argv[3], float(sys.argv[4])))
