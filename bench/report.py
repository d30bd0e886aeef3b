"""Medians, ratios, request counts, ceilings and targets of a benchmark session, and its Markdown table."""

from __future__ import annotations

import re
import statistics

MIB = 1 << 20

# Each ferry step, the peer it is compared with, and the ceilings that bound its throughput.
# Throughput is the compressed bytes moved (warmup), the archive written (save) or the archive
# read (load), per second of wall time.
WARMUP_CASES = ["cold", "warm", "update"]
ARCHIVES = {
    "ferry": ("ferry save", True),
    "docker_save": ("docker save", False),
    "skopeo_docker_archive": ("skopeo docker-archive (3 files)", False),
    "skopeo_oci_archive": ("skopeo oci-archive (3 files)", True),
}
SAVE_PEERS = {
    "docker": "docker pull + docker save",
    "skopeo_docker_archive": "skopeo copy to docker-archive (3 archives)",
    "skopeo_oci_archive": "skopeo copy to oci-archive (3 archives)",
}
# The slow-link step writes only the archives that need no more than one pass over the link.
SLOW_SAVE_PEERS = {peer: SAVE_PEERS[peer] for peer in ("docker", "skopeo_oci_archive")}
MIRROR_TOOLS = {
    "ferry": "ferry mirror",
    "skopeo_copy": "skopeo copy (4 commands)",
    "skopeo_sync": "skopeo sync (YAML list)",
}
MIRROR_CASES = {"cold": "cold: destination empty", "unchanged": "re-run, nothing changed"}
MIRROR_TARGET_RATIO = 2.0
MIRROR_UNCHANGED_TARGET_SECONDS = 1.0
# Request kinds, as tools.request_kind names them, and the order methods are listed in.
REQUEST_KINDS = ["manifest", "blob", "upload", "other"]
METHODS = ["HEAD", "GET", "POST", "PATCH", "PUT", "DELETE"]
CEILINGS = {
    "loopback": "curl of the biggest blob from the registry to /dev/null",
    "sha256sum": "sha256sum of the biggest blob (page cache)",
    "sha256_openssl": "openssl dgst -sha256 of the biggest blob (page cache; uses the SHA extensions where the CPU has them)",
    "gunzip": "gzip -dc of the biggest blob to /dev/null, compressed bytes in",
    "disk": "dd of 1 GiB of zeros with conv=fdatasync into the work folder",
    "upload": "curl upload of the biggest blob into the registry on 127.0.0.1 (POST, then one PUT with the digest)",
    "slowlink": "curl of the biggest blob across the slow link (forwarder on 127.0.0.1, registry in the namespace) to /dev/null",
}
# A step's sha256 ceiling is the faster of the two sha256 programs, because coreutils'
# sha256sum does not use the CPU's SHA extensions and ferry's hasher may.
SHA256_CEILINGS = ["sha256sum", "sha256_openssl"]
RSS_TARGET = 64 * MIB

# Failures that come from a peer's known limit rather than from the benchmark or ferry.
KNOWN_LIMITS = {
    "load.skopeo_oci_archive.docker": "docker load of Docker 20.10 reads only manifest.json or the older repositories format, and skopeo's oci-archive contains neither",
}

# Phases of a ferry command, read from the progress lines it writes to stderr when that is not
# a terminal. Time before the first such line is planning (settings, manifests, engine state).
# For ferry mirror, download is the copy of an image's blobs (download and upload), and push
# manifests starts at its "pushing manifests" line.
PHASES = ["plan", "download", "verify", "engine load", "write", "push manifests"]


def phase_of(line: str) -> str | None:
    if line.endswith("to download"):
        return "download"
    if line.endswith("pushing manifests"):
        return "push manifests"
    if line.startswith("verifying "):
        return "verify"
    if "loading" in line and line.endswith("into Docker"):
        return "engine load"
    if line.endswith("writing the archive") or line.endswith("writing the OCI layout"):
        return "write"
    return None


def phases(measurement: dict) -> dict[str, float]:
    """Split a ferry command's wall time into phases by its progress lines."""
    marks = [(moment, phase) for moment, line in measurement.get("events", []) if (phase := phase_of(line))]
    totals = dict.fromkeys(PHASES, 0.0)
    current, since = "plan", 0.0
    for moment, phase in marks:
        totals[current] += moment - since
        current, since = phase, moment
    totals[current] += measurement["seconds"] - since
    return totals


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rate(measurement: dict | None, count: int | None) -> float | None:
    if not measurement or not measurement.get("ok") or not count or measurement["seconds"] <= 0:
        return None
    return count / measurement["seconds"]


def ceiling_rates(run: dict, per_cpu: bool = False) -> dict[str, float]:
    """Return each ceiling of one run in bytes per second of wall time (or of CPU time)."""
    rates = {}
    for name in CEILINGS:
        measurement = run.get(f"ceiling.{name}")
        if not measurement or not measurement.get("ok"):
            continue
        elapsed = measurement["cpu"] if per_cpu else measurement["seconds"]
        if measurement.get("bytes") and elapsed > 0:
            rates[name] = measurement["bytes"] / elapsed
    return rates


def bound(rates: dict[str, float], names: list[str]) -> tuple[str, float] | None:
    """Return the lowest of the named ceilings, taking the faster sha256 program for sha256."""
    found = []
    for name in names:
        if name == "sha256":
            hashers = [(hasher, rates[hasher]) for hasher in SHA256_CEILINGS if hasher in rates]
            if hashers:
                found.append(max(hashers, key=lambda item: item[1]))
        elif name in rates:
            found.append((name, rates[name]))
    return min(found, key=lambda item: item[1]) if found else None


def step_throughputs(results: dict, run: dict) -> dict[str, dict]:
    """Return, for each ferry step of one run, its throughput and the fraction of its ceiling."""
    facts = results["imageset"]
    rates = ceiling_rates(run)
    steps = {
        "warmup.cold.ferry": (facts["unique_size"], ["loopback", "sha256", "gunzip"]),
        "warmup.update.ferry": (facts["update_layer_size"], ["loopback", "sha256", "gunzip"]),
        "save.ferry": ((run.get("save.ferry") or {}).get("size"), ["loopback", "sha256", "disk"]),
        "slowlink.warmup.cold.ferry": (facts["unique_size"], ["slowlink", "sha256", "gunzip"]),
        "slowlink.warmup.update.ferry": (facts["update_layer_size"], ["slowlink", "sha256", "gunzip"]),
        "slowlink.save.ferry": ((run.get("slowlink.save.ferry") or {}).get("size"), ["slowlink", "sha256", "disk"]),
        # The mirror copies every blob of the three images once, and the update's top layer.
        "mirror.cold.ferry": (facts["unique_size"] + facts["update_layer_size"], ["loopback", "sha256", "upload"]),
    }
    for kind, (_, compressed) in ARCHIVES.items():
        key = f"load.{kind}.ferry"
        steps[key] = ((run.get(key) or {}).get("size"), ["sha256", "gunzip"] if compressed else ["sha256", "disk"])
    result = {}
    for key, (count, ceilings) in steps.items():
        throughput = rate(run.get(key), count)
        limit = bound(rates, ceilings)
        if throughput is None:
            continue
        result[key] = {
            "throughput": throughput,
            "ceilings": ceilings,
            "ceiling": limit[0] if limit else None,
            "fraction": throughput / limit[1] if limit else None,
        }
    return result


def summarize(results: dict) -> dict:
    runs = results["runs"]
    keys = sorted({key for run in runs for key in run})
    steps = {}
    for key in keys:
        values = [run[key] for run in runs if key in run]
        good = [v for v in values if v.get("ok")]
        steps[key] = {
            "runs": len(values),
            "ok": len(good),
            "seconds": median([v["seconds"] for v in good]),
            "max_rss": max((v["max_rss"] for v in good), default=None),
            "cpu": median([v["cpu"] for v in good]),
            "dockerd_cpu": median([v["dockerd_cpu"] for v in good]),
            "size": median([v.get("size") for v in good]),
            # Temporary folder names differ in each run, so they are masked to group the errors.
            "errors": sorted({re.sub(r"\d{6,}", "N", v["error"]) for v in values if not v.get("ok")}),
        }

    def ratio(peer: str, ferry: str, field: str = "seconds") -> float | None:
        values = []
        for run in runs:
            a, b = run.get(peer), run.get(ferry)
            if a and b and a.get("ok") and b.get("ok") and a.get(field) and b.get(field):
                values.append(a[field] / b[field])
        return median(values)

    ratios = {}
    for prefix in ("warmup", "slowlink.warmup"):
        for case in WARMUP_CASES:
            ratios[f"{prefix}.{case}"] = ratio(f"{prefix}.{case}.docker", f"{prefix}.{case}.ferry")
    for prefix, peers in (("save", SAVE_PEERS), ("slowlink.save", SLOW_SAVE_PEERS)):
        for peer in peers:
            ratios[f"{prefix}.{peer}"] = ratio(f"{prefix}.{peer}", f"{prefix}.ferry")
            ratios[f"{prefix}.{peer}.size"] = ratio(f"{prefix}.{peer}", f"{prefix}.ferry", "size")
    for kind in ARCHIVES:
        ratios[f"load.{kind}"] = ratio(f"load.{kind}.docker", f"load.{kind}.ferry")
    for case in MIRROR_CASES:
        for tool in MIRROR_TOOLS:
            if tool != "ferry":
                ratios[f"mirror.{case}.{tool}"] = ratio(f"mirror.{case}.{tool}", f"mirror.{case}.ferry")

    throughputs: dict[str, dict] = {}
    per_run = [step_throughputs(results, run) for run in runs]
    # The median throughput is divided by the lowest median ceiling, so the fraction and the
    # ceiling it names come from the same numbers even when runs were bounded by different ones.
    per_run_rates = [ceiling_rates(run) for run in runs]
    median_rates = {name: median([r[name] for r in per_run_rates if name in r]) for name in {n for r in per_run_rates for n in r}}
    for key in sorted({k for item in per_run for k in item}):
        entries = [item[key] for item in per_run if key in item]
        throughput = median([e["throughput"] for e in entries])
        limit = bound(median_rates, entries[0]["ceilings"])
        throughputs[key] = {
            "throughput": throughput,
            "ceiling": limit[0] if limit else None,
            "fraction": throughput / limit[1] if limit else None,
        }
    phase_medians = {}
    for key in steps:
        if not key.endswith(".ferry") or key.startswith("ceiling."):
            continue
        split = [phases(run[key]) for run in runs if key in run and run[key].get("ok")]
        if split:
            phase_medians[key] = {phase: median([item[phase] for item in split]) for phase in PHASES}
    ceilings = {}
    for name in CEILINGS:
        ceilings[name] = {
            "wall": median([ceiling_rates(run).get(name) for run in runs]),
            "cpu": median([ceiling_rates(run, per_cpu=True).get(name) for run in runs]),
        }

    requests = {key: request_medians([run[key] for run in runs if key in run and run[key].get("ok")]) for key in keys}
    requests = {key: value for key, value in requests.items() if value}
    first_bytes = [(run.get("ceiling.slowlink") or {}).get("details", {}).get("v2_first_byte_seconds") for run in runs]

    return {
        "steps": steps, "ratios": ratios, "throughputs": throughputs, "phases": phase_medians, "ceilings": ceilings,
        "requests": requests, "slowlink_first_byte": median(first_bytes), "targets": targets(steps, ratios),
    }


def request_medians(measurements: list[dict]) -> dict:
    """Return the median count of each (registry role, kind, method) over the runs' requests."""
    counted = [m["requests"] for m in measurements if m.get("requests")]
    if not counted:
        return {}
    result = {}
    for role in sorted({role for item in counted for role in item}):
        kinds = {}
        for kind in REQUEST_KINDS:
            methods = sorted({method for item in counted for method in item.get(role, {}).get("kinds", {}).get(kind, {})})
            values = {method: median([item.get(role, {}).get("kinds", {}).get(kind, {}).get(method, 0) for item in counted]) for method in methods}
            kinds[kind] = {method: value for method, value in values.items() if value}
        result[role] = {
            "kinds": kinds,
            "total": median([item.get(role, {}).get("total", 0) for item in counted]),
            "get_bytes": median([item.get(role, {}).get("get_bytes", 0) for item in counted]),
        }
    return result


def targets(steps: dict, ratios: dict) -> list[dict]:
    checks = []

    def add(name: str, value: float | None, met: bool | None, shown: str) -> None:
        if value is not None:
            checks.append({"target": name, "value": value, "met": met, "shown": shown})

    value = ratios.get("save.docker")
    add("ferry save at least 3x faster than docker pull + docker save", value, None if value is None else value >= 3, times(value))
    value = ratios.get("save.docker.size")
    share = 1 / value if value else None
    add("ferry's archive at most half the size of docker save's", share, None if share is None else share <= 0.5, percent(share))
    for case in WARMUP_CASES:
        value = ratios.get(f"warmup.{case}")
        add(f"ferry warmup ({case}) no slower than docker pull", value, None if value is None else value >= 1, times(value))
    for kind, (label, _) in ARCHIVES.items():
        value = ratios.get(f"load.{kind}")
        if steps.get(f"load.{kind}.docker", {}).get("ok"):
            add(f"ferry load no slower than docker load, archive of {label}", value, None if value is None else value >= 1, times(value))
    value = ratios.get("mirror.cold.skopeo_copy")
    add("ferry mirror (cold) at least 2x faster than skopeo copy", value, None if value is None else value >= MIRROR_TARGET_RATIO, times(value))
    unchanged = (steps.get("mirror.unchanged.ferry") or {})
    if unchanged.get("ok"):
        value = unchanged["seconds"]
        add("ferry mirror re-run with nothing changed under 1 s", value, value < MIRROR_UNCHANGED_TARGET_SECONDS, f"{seconds(value)} s")
    for case in WARMUP_CASES:
        value = ratios.get(f"slowlink.warmup.{case}")
        add(f"slow link: ferry warmup ({case}) faster than docker pull", value, None if value is None else value > 1, times(value))
    for peer, label in SLOW_SAVE_PEERS.items():
        value = ratios.get(f"slowlink.save.{peer}")
        add(f"slow link: ferry save faster than {label}", value, None if value is None else value > 1, times(value))
    peaks = {key: step["max_rss"] for key, step in steps.items() if key.endswith(".ferry") and step["max_rss"]}
    if peaks:
        worst = max(peaks, key=peaks.get)
        add(f"peak RSS under 64 MiB for every ferry command (largest: {worst})", peaks[worst], peaks[worst] < RSS_TARGET, mib(peaks[worst]))
    return checks


# Formatting.

def seconds(value) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def mib(value) -> str:
    if value is None:
        return "-"
    return f"{value / MIB:.0f} MiB" if value >= 10 * MIB else f"{value / MIB:.1f} MiB"


def rate_text(value) -> str:
    if value is None:
        return "-"
    return f"{value / MIB:.0f} MiB/s" if value >= 10 * MIB else f"{value / MIB:.1f} MiB/s"


def times(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def percent(value) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def step_seconds(step: dict | None) -> str:
    if not step:
        return "-"
    if step["ok"] == 0:
        return "failed"
    text = f"{seconds(step['seconds'])} s"
    if step["ok"] < step["runs"]:
        text += f" ({step['ok']} of {step['runs']} runs ok)"
    return text


def step_field(step: dict | None, name: str, formatter) -> str:
    return formatter(step[name]) if step and step.get(name) is not None else "-"


def throughput_text(entry: dict | None) -> str:
    if not entry:
        return "-"
    text = rate_text(entry["throughput"])
    if entry["fraction"] is not None:
        text += f" ({percent(entry['fraction'])} of {entry['ceiling']})"
    return text


def cpu_pair(ferry: dict | None, docker: dict | None) -> str:
    return f"{step_field(ferry, 'dockerd_cpu', seconds)} / {step_field(docker, 'dockerd_cpu', seconds)} s"


def header_section(results: dict) -> list[str]:
    machine = results["machine"]
    settings = results["settings"]
    facts = results["imageset"]
    start_load = " ".join(f"{v:.2f}" for v in results["load_average_start"])
    end_load = " ".join(f"{v:.2f}" for v in results.get("load_average_end", []))
    lines = [
        f"## Results of {results['started']} (session {settings['session']})",
        "",
        f"- Machine: {machine['cpus']} cores ({machine['cpu_model']}), {machine['memory_bytes'] / (1 << 30):.0f} GiB, {machine['os']}, kernel {machine['kernel']}",
        f"- Docker {machine['docker_server']} (client {machine['docker_client']}), storage driver {machine['docker_storage_driver']}; {machine['skopeo']}; {machine['registry']}",
        f"- {machine['ferry']}, {machine.get('ferry_source', 'built from this checkout')}; repository at commit {machine['ferry_commit']}",
        f"- Scale {settings['scale']:g}, {settings['runs']} runs, medians shown. Ratios are peer time / ferry time within each run, so above 1 ferry is faster.",
        f"- Load average (1, 5, 15 min) at the start: {start_load}; at the end: {end_load}. Total time {results.get('seconds_total', 0) / 60:.0f} min.",
        "",
        "| image | layers | unpacked | gzip |",
        "|---|---:|---:|---:|",
    ]
    for name, image in facts["images"].items():
        lines.append(f"| {name} | {image['layers']} | {mib(image['unpacked'])} | {mib(image['size'])} |")
    lines.append(f"| three images, each layer once | {facts['unique_layers']} | {mib(facts['unique_unpacked'])} | {mib(facts['unique_size'])} |")
    return lines


def warmup_section(summary: dict, prefix: str = "warmup", title: str = "Warmup into Docker") -> list[str]:
    steps, ratios, flows = summary["steps"], summary["ratios"], summary["throughputs"]
    if not any(f"{prefix}.{case}.ferry" in steps for case in WARMUP_CASES):
        return []
    lines = [
        f"### {title}",
        "",
        "| case | ferry warmup | docker pull | docker / ferry | ferry peak RSS | ferry CPU | dockerd CPU, ferry / docker | ferry throughput |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in WARMUP_CASES:
        ferry, docker = steps.get(f"{prefix}.{case}.ferry"), steps.get(f"{prefix}.{case}.docker")
        lines.append(
            f"| {case} | {step_seconds(ferry)} | {step_seconds(docker)} | {times(ratios.get(f'{prefix}.{case}'))} "
            f"| {step_field(ferry, 'max_rss', mib)} | {step_field(ferry, 'cpu', seconds)} s | {cpu_pair(ferry, docker)} "
            f"| {throughput_text(flows.get(f'{prefix}.{case}.ferry'))} |"
        )
    return lines


def save_section(summary: dict, prefix: str = "save", title: str = "Save (registry to archive)",
                 peers: dict[str, str] = SAVE_PEERS, warmup: str = "warmup") -> list[str]:
    steps, ratios, flows = summary["steps"], summary["ratios"], summary["throughputs"]
    if f"{prefix}.ferry" not in steps:
        return []
    lines = [
        f"### {title}",
        "",
        "| tool | time | archive | time / ferry's | size / ferry's | peak RSS | CPU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    ferry = steps.get(f"{prefix}.ferry")
    lines.append(
        f"| ferry save (cold cache) | {step_seconds(ferry)} | {step_field(ferry, 'size', mib)} | 1 | 1 "
        f"| {step_field(ferry, 'max_rss', mib)} | {step_field(ferry, 'cpu', seconds)} s |"
    )
    for peer, label in peers.items():
        step = steps.get(f"{prefix}.{peer}")
        rss, cpu = step_field(step, "max_rss", mib), f"{step_field(step, 'cpu', seconds)} s"
        if peer == "docker":
            pull = steps.get(f"{warmup}.cold.docker") or steps.get(f"{prefix}.docker_pull")
            label += f" ({step_seconds(pull)} + {step_seconds(steps.get(f'{prefix}.docker_save'))})"
            # The work happens in dockerd, so the RSS and CPU of the docker CLI are left out.
            rss, cpu = "-", "-"
        lines.append(
            f"| {label} | {step_seconds(step)} | {step_field(step, 'size', mib)} | {times(ratios.get(f'{prefix}.{peer}'))} "
            f"| {times(ratios.get(f'{prefix}.{peer}.size'))} | {rss} | {cpu} |"
        )
    lines.append(f"| ferry save throughput | {throughput_text(flows.get(f'{prefix}.ferry'))} | | | | | |")
    return lines


def load_section(summary: dict) -> list[str]:
    steps, ratios, flows = summary["steps"], summary["ratios"], summary["throughputs"]
    if not any(key.startswith("load.") for key in steps):
        return []
    lines = [
        "### Load (archive to Docker)",
        "",
        "| archive | size | ferry load | docker load | docker / ferry | ferry peak RSS | ferry CPU | dockerd CPU, ferry / docker | ferry throughput |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, (label, _) in ARCHIVES.items():
        ferry, docker = steps.get(f"load.{kind}.ferry"), steps.get(f"load.{kind}.docker")
        if not ferry and not docker:
            continue
        lines.append(
            f"| {label} | {step_field(ferry or docker, 'size', mib)} | {step_seconds(ferry)} | {step_seconds(docker)} "
            f"| {times(ratios.get(f'load.{kind}'))} | {step_field(ferry, 'max_rss', mib)} | {step_field(ferry, 'cpu', seconds)} s "
            f"| {cpu_pair(ferry, docker)} | {throughput_text(flows.get(f'load.{kind}.ferry'))} |"
        )
    return lines


def request_cell(counts: dict | None, kind: str) -> str:
    """Return a kind's requests as "4 HEAD + 4 GET", or "-" when there were none."""
    methods = ((counts or {}).get("kinds") or {}).get(kind) or {}
    ordered = [m for m in METHODS if m in methods] + sorted(m for m in methods if m not in METHODS)
    return " + ".join(f"{methods[m]:g} {m}" for m in ordered) or "-"


def mirror_section(summary: dict) -> list[str]:
    steps, ratios, flows, requests = summary["steps"], summary["ratios"], summary["throughputs"], summary["requests"]
    if not any(key.startswith("mirror.") for key in steps):
        return []
    lines = [
        "### Mirror (registry to registry)",
        "",
        "Four images (chromium, ssh, firefox and chromium:update) from the bench's registry into an",
        "empty distribution registry on 127.0.0.1, then the same command again. A tool's time counts",
        "only when every destination tag has the source's manifest digest afterwards.",
        "",
        "| tool | cold | cold: peer / ferry | re-run, nothing changed | re-run: peer / ferry | peak RSS | CPU, cold | requests, cold: source / destination | requests, re-run: source / destination |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tool, label in MIRROR_TOOLS.items():
        cold, again = steps.get(f"mirror.cold.{tool}"), steps.get(f"mirror.unchanged.{tool}")
        if not cold and not again:
            continue
        ratio_cold = "1" if tool == "ferry" else times(ratios.get(f"mirror.cold.{tool}"))
        ratio_again = "1" if tool == "ferry" else times(ratios.get(f"mirror.unchanged.{tool}"))
        totals = []
        for case in MIRROR_CASES:
            counts = requests.get(f"mirror.{case}.{tool}") or {}
            totals.append(" / ".join(f"{(counts.get(role) or {}).get('total', 0):g}" for role in ("source", "destination")) if counts else "-")
        lines.append(
            f"| {label} | {step_seconds(cold)} | {ratio_cold} | {step_seconds(again)} | {ratio_again} "
            f"| {step_field(cold, 'max_rss', mib)} | {step_field(cold, 'cpu', seconds)} s | {totals[0]} | {totals[1]} |"
        )
    lines.append(f"| ferry mirror throughput, cold | {throughput_text(flows.get('mirror.cold.ferry'))} | | | | | | | |")
    lines += [
        "",
        "Requests each registry received, from its access log, by kind and method (median over the runs).",
        "Blob requests include HEAD checks; upload requests are POST (start or mount), PATCH (data) and PUT",
        "(commit) under /blobs/uploads/; other is GET /v2/ (the version check).",
        "",
        "| tool | case | source: manifest | source: blob | source: other | destination: manifest | destination: blob | destination: upload | destination: other |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tool, label in MIRROR_TOOLS.items():
        for case in MIRROR_CASES:
            counts = requests.get(f"mirror.{case}.{tool}")
            if not counts:
                continue
            source, destination = counts.get("source"), counts.get("destination")
            lines.append(
                f"| {label} | {case} | {request_cell(source, 'manifest')} | {request_cell(source, 'blob')} | {request_cell(source, 'other')} "
                f"| {request_cell(destination, 'manifest')} | {request_cell(destination, 'blob')} | {request_cell(destination, 'upload')} "
                f"| {request_cell(destination, 'other')} |"
            )
    return lines


def slowlink_section(results: dict, summary: dict) -> list[str]:
    steps, requests = summary["steps"], summary["requests"]
    link = results.get("slow_link")
    if not link or not any(key.startswith("slowlink.") for key in steps):
        return []
    ceiling = (summary["ceilings"].get("slowlink") or {}).get("wall")
    first_byte = summary.get("slowlink_first_byte")
    lines = [
        "### Slow link",
        "",
        f"- Link: {link['rate']} and {link['delay']} in each direction ({link['shaping']}).",
        f"- Path: {link['path']}.",
        f"- Measured: {rate_text(ceiling)} ({ceiling * 8 / 1e6:.0f} Mbit/s) for curl of the biggest blob; "
        f"{seconds(first_byte)} s to the first byte of GET /v2/ on a new connection (2 round trips)." if ceiling and first_byte else
        "- Measured: -",
    ]
    sections = [
        lines,
        warmup_section(summary, "slowlink.warmup", "Warmup into Docker over the slow link"),
        save_section(summary, "slowlink.save", "Save over the slow link", SLOW_SAVE_PEERS, "slowlink.warmup"),
    ]
    table = [
        "### Requests over the slow link",
        "",
        "Requests the registry in the namespace received, from its access log (median over the runs).",
        "Each one costs at least a round trip.",
        "",
        "| command | manifest | blob | other | total |",
        "|---|---|---|---|---:|",
    ]
    for key, counts in requests.items():
        if not key.startswith("slowlink.") or key == "slowlink.save.docker":
            continue
        source = counts.get("source")
        table.append(f"| {key.removeprefix('slowlink.')} | {request_cell(source, 'manifest')} | {request_cell(source, 'blob')} | {request_cell(source, 'other')} | {(source or {}).get('total', 0):g} |")
    sections.append(table)
    return [line for index, section in enumerate(sections) if section for line in ([""] if index else []) + section]


def phases_section(summary: dict) -> list[str]:
    lines = [
        "### Where ferry spends its time",
        "",
        "Phases from the progress lines ferry writes to stderr, median seconds. Plan covers the",
        "settings, the manifests and the engine's state. Engine load is the POST /images/load stream.",
        "For mirror, download is the copy of the blobs (download and upload), image after image.",
        "",
        "| ferry step | " + " | ".join(PHASES) + " |",
        "|---|" + "---:|" * len(PHASES),
    ]
    for key, split in summary["phases"].items():
        lines.append(f"| {key.removesuffix('.ferry')} | " + " | ".join(seconds(split[phase]) for phase in PHASES) + " |")
    return lines


def ceilings_section(summary: dict) -> list[str]:
    if not any((summary["ceilings"].get(name) or {}).get("wall") for name in CEILINGS):
        return []
    lines = [
        "### Ceilings",
        "",
        "| ceiling | measured as | throughput | per CPU second |",
        "|---|---|---:|---:|",
    ]
    for name, description in CEILINGS.items():
        rates = summary["ceilings"].get(name) or {}
        # The slow link's rate is set by tc, not by the CPU, so a rate per CPU second means nothing.
        per_cpu = "-" if name == "slowlink" else rate_text(rates.get("cpu"))
        lines.append(f"| {name} | {description} | {rate_text(rates.get('wall'))} | {per_cpu} |")
    lines += [
        "",
        "Each ferry throughput is divided by the lowest ceiling its work passes through: warmup by",
        "loopback, sha256 and gunzip; save by loopback, sha256 and disk; load of a gzip archive by",
        "sha256 and gunzip, of an uncompressed one by sha256 and disk. The sha256 ceiling is the",
        "faster of sha256sum and openssl. Over the slow link, the link's ceiling replaces loopback;",
        "mirror is bounded by loopback, sha256 and upload. Throughput is per second of wall time, so it",
        "drops when other work shares the CPU; per CPU second shows the rate without that contention.",
    ]
    return lines


def targets_section(summary: dict) -> list[str]:
    lines = [
        "### Targets",
        "",
        "| target | measured | met |",
        "|---|---:|---|",
    ]
    for check in summary["targets"]:
        if check["met"] is None:
            met = "unknown"
        else:
            met = "yes" if check["met"] else "**no**"
        lines.append(f"| {check['target']} | {check['shown']} | {met} |")
    failures = [(key, error) for key, step in summary["steps"].items() for error in step["errors"]]
    if failures:
        lines += ["", "### Failed steps", ""]
        for key, error in failures:
            reason = f" Expected: {KNOWN_LIMITS[key]}." if key in KNOWN_LIMITS else ""
            lines.append(f"- `{key}`: {error}.{reason}")
    return lines


def markdown(results: dict) -> str:
    summary = results["summary"]
    sections = [
        header_section(results),
        warmup_section(summary),
        save_section(summary),
        load_section(summary),
        mirror_section(summary),
        slowlink_section(results, summary),
        phases_section(summary),
        ceilings_section(summary),
        targets_section(summary),
    ]
    return "\n\n".join("\n".join(section) for section in sections if section) + "\n"
