#!/usr/bin/env bash
# `make lab`: the embedded lab's registry on loopback, then JupyterLab on the notebooks.
# Everything stops on Ctrl-C. State lives under LABKIT_HOME (default ~/.labkit).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
export LABKIT_HOME="${LABKIT_HOME:-$HOME/.labkit}"
PORT="${LABKIT_REGISTRY_PORT:-5001}"
mkdir -p "$LABKIT_HOME" notebooks

"$VENV/bin/labkit" registry serve --port "$PORT" --root "$LABKIT_HOME/registry" &
registry=$!
trap 'kill "$registry" 2>/dev/null; wait "$registry" 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 50); do
  "$VENV/bin/python" -c "import httpx,sys; httpx.get('http://127.0.0.1:$PORT/v2/', timeout=0.2)" 2>/dev/null && break
  kill -0 "$registry" 2>/dev/null || { echo "lab: the registry did not start (is port $PORT taken? set LABKIT_REGISTRY_PORT)" >&2; exit 1; }
  sleep 0.1
done
echo "lab: registry at 127.0.0.1:$PORT (push images as 127.0.0.1:$PORT/workshop/NAME:TAG)"
echo "lab: opening JupyterLab; Ctrl-C stops the lab"
root_flag=(); [ "$(id -u)" -eq 0 ] && root_flag=(--allow-root)  # containers and CI often run as root
"$VENV/bin/jupyter" lab --no-browser --ip 127.0.0.1 --notebook-dir notebooks "${root_flag[@]}"
