#!/usr/bin/env bash
# First run: build ferry, serve the bundled sample image on 127.0.0.1, and warm it up into the
# local Docker engine (or into an OCI layout folder when no engine responds). Needs no external
# server, and no internet once cargo has fetched the crates.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${FERRY_DEMO_PORT:-5055}
cargo build --locked --quiet
# cargo run finds the binary wherever CARGO_TARGET_DIR or build.target-dir put it, and on
# Unix it replaces itself with ferry, so $! below is the server's process ID.
ferry=(cargo run --locked --quiet --)

"${ferry[@]}" serve samples/demo --listen "127.0.0.1:$port" &
serve_pid=$!
# Wait for the server to stop, so a second run can bind the same port at once.
trap 'kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
# A server that exited could not listen, because another process is using the port.
if ! kill -0 "$serve_pid" 2>/dev/null; then
    echo "error: ferry serve could not listen on 127.0.0.1:$port; set FERRY_DEMO_PORT to a free port and run again" >&2
    exit 1
fi

inventory=examples/demo/inventory.yml
if [ "$port" != 5055 ]; then
    export REGISTRY_URL="http://127.0.0.1:$port"
fi

if docker version >/dev/null 2>&1; then
    "${ferry[@]}" warmup -i "$inventory" --host demo-node
    docker image ls "127.0.0.1:$port/demochromium"
else
    echo "no Docker engine answers: warming up into the OCI layout target/demo-oci instead"
    # ferry creates the layout folder but not its parent, which a separate CARGO_TARGET_DIR leaves absent.
    mkdir -p target
    "${ferry[@]}" warmup -i "$inventory" --host demo-node --to oci:target/demo-oci
fi
