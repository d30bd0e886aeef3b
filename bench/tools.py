"""Processes the benchmark drives: timed commands, the registry, and the Docker engine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

REGISTRY_BIN = "/usr/bin/docker-registry"

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
    # Peak resident set size of the command in bytes (the largest one for a sequence).
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
        printable = " ".join(command)
        events: list[tuple[float, str]] = []

        with open(log_path, "wb") as log, open(out_path, "wb") as out:
            log.write(f"$ {printable}\n".encode())
            log.flush()
            dockerd_before = process_cpu(self.dockerd_pid)
            start = time.monotonic()
            process = subprocess.Popen(command, stdout=out if capture else log, stderr=subprocess.PIPE if capture else log, stdin=subprocess.DEVNULL, env=self.env)
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
        measurement = Measurement(
            seconds=seconds,
            max_rss=usage.ru_maxrss * 1024,
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


class Registry:
    """The CNCF distribution registry on 127.0.0.1 over plain HTTP, storing in a work folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        storage = self.folder / "storage"
        if storage.exists():
            shutil.rmtree(storage)
        storage.mkdir(parents=True)
        config = self.folder / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"http:\n  addr: {self.host}\n"
        )
        log = open(self.folder / "registry.log", "wb")
        self.process = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the registry exited with {self.process.returncode}; see {self.folder / 'registry.log'}")
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the registry did not respond on {self.host} within 30 s; see {self.folder / 'registry.log'}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        storage = self.folder / "storage"
        if storage.exists():
            shutil.rmtree(storage)


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
