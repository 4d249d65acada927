#!/usr/bin/env bash
# `make lab`: start the lab (`labkit lab up`), then JupyterLab on notebook 00.
# LAB_BACKEND=native runs the real kube-apiserver, Kyverno and policy-controller as local processes
# (built first if needed), LAB_BACKEND=kind a kind cluster; LABKIT_HOME the lab's directory
# (default ~/.labkit).
# Ctrl-C stops JupyterLab and the lab; images and keys stay in LABKIT_HOME for next time.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
export LABKIT_HOME="${LABKIT_HOME:-$HOME/.labkit}"
export LAB_BACKEND="${LAB_BACKEND:-embedded}"
PORT="${LAB_JUPYTER_PORT:-8888}"

if [ "$LAB_BACKEND" = kind ] && ! "$VENV/bin/python" -c 'import sh' 2>/dev/null; then
  "$VENV/bin/pip" install --quiet -e '.[kind]'  # the kind backend drives docker, kind, helm and kubectl
fi
if [ "$LAB_BACKEND" = native ]; then
  tools/reference-tools.sh  # the control plane and engines, from the Go module proxy; kept once built
fi
"$VENV/bin/labkit" lab up --backend "$LAB_BACKEND"
trap '"$VENV/bin/labkit" lab down >/dev/null 2>&1 && echo "lab: stopped (keys and images stay in $LABKIT_HOME)"' EXIT
trap 'exit 0' INT TERM  # Ctrl-C is how the lab is meant to end

echo "lab: JupyterLab opens on notebook 00; the URL with its token follows. Ctrl-C stops everything."
root_flag=(); [ "$(id -u)" -eq 0 ] && root_flag=(--allow-root)  # containers and CI often run as root
"$VENV/bin/jupyter" lab --no-browser --ip 127.0.0.1 --port "$PORT" --ServerApp.root_dir=notebooks \
  --LabApp.default_url=/lab/tree/00-start-here.ipynb "${root_flag[@]}"
