#!/usr/bin/env bash
# `make lab`: start the lab (`labkit lab up`), then JupyterLab on notebook 00.
# LAB_BACKEND=native runs the real kube-apiserver, Kyverno and policy-controller as local processes
# (built first if needed), LAB_BACKEND=kind a kind cluster; LABKIT_HOME the lab's directory
# (default ~/.labkit); LAB_JUPYTER_PORT JupyterLab's port (default 8888).
# One Ctrl-C stops JupyterLab and the lab; images and keys stay in LABKIT_HOME for next time.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="$PWD/.venv"
export LABKIT_HOME="${LABKIT_HOME:-$HOME/.labkit}"
export LAB_BACKEND="${LAB_BACKEND:-embedded}"
PORT="${LAB_JUPYTER_PORT:-8888}"
STOP_WITHIN=20  # seconds JupyterLab gets to stop (kernels, terminals) before it is killed

if [ "$LAB_BACKEND" = kind ] && ! "$VENV/bin/python" -c 'import sh' 2>/dev/null; then
  "$VENV/bin/pip" install --quiet -e '.[kind]'  # the kind backend drives docker, kind, helm and kubectl
fi
if [ "$LAB_BACKEND" = native ]; then
  tools/reference-tools.sh  # the control plane and engines, from the Go module proxy; kept once built
fi

# Ctrl-C reaches this script (the terminal's foreground process group) and interrupts `wait` below.
# JupyterLab runs in the background with SIGINT ignored and without the terminal as its input, so it
# never asks "Shut down this Jupyter server (y/[n])?"; this script stops it — SIGTERM, then SIGKILL
# after STOP_WITHIN seconds — and then the lab: one Ctrl-C, and a bounded stop.
jupyter_pid=
stop_all() {
  trap '' INT TERM  # an impatient second Ctrl-C must not cut `lab down` short (its children inherit this)
  if [ -n "$jupyter_pid" ] && kill -TERM "$jupyter_pid" 2>/dev/null; then
    for _ in $(seq $((STOP_WITHIN * 5))); do kill -0 "$jupyter_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$jupyter_pid" 2>/dev/null || true
  fi
  if timeout 120 "$VENV/bin/labkit" lab down >/dev/null 2>&1; then
    echo "lab: stopped (keys and images stay in $LABKIT_HOME)"
  else
    echo "lab: \`labkit lab down\` failed; \`labkit lab status\` shows what still runs" >&2
  fi
}
trap stop_all EXIT
trap 'exit 0' INT TERM  # Ctrl-C is how the lab is meant to end

"$VENV/bin/labkit" lab up --backend "$LAB_BACKEND"

# JupyterLab's terminals and `!` cells inherit this environment: labkit and the real tools on PATH,
# KUBECONFIG where the backend has an API server, the lab's addresses (`labkit lab env --help`).
lab_env=$("$VENV/bin/labkit" lab env)
eval "$lab_env"

# JupyterLab's root: the notebooks and the learner's workshop directory, nothing else of the
# repository. A directory of symlinks in the lab's home, so labs with different homes sharing
# one checkout each see their own workshop directory; files learners create there stay.
root="$LABKIT_HOME/jupyterlab"
mkdir -p "$root"
mkdir -p -m 700 "$LABKIT_HOME/workshop"
find "$root" -mindepth 1 -maxdepth 1 -type l -delete  # links from an earlier start
link() {  # target, name: a learner's own file of that name is kept, and the link left out
  if [ -e "$root/$2" ]; then echo "lab: $root/$2 is not linked to $1: a file of that name is there" >&2
  else ln -sT "$1" "$root/$2"; fi
}
for entry in notebooks/*; do
  [ "$(basename "$entry")" = src ] && continue  # the drafts: they hold the exercises' solutions
  link "$PWD/$entry" "$(basename "$entry")"
done
link ../workshop workshop

mapfile -t jupyter_args < <(grep -v -e '^#' -e '^$' tools/jupyterlab-args)
[ "$(id -u)" -eq 0 ] && jupyter_args+=(--allow-root)  # containers and CI often run as root
# Terminals run the learner's shell, not as a login shell: that reads /etc/profile, which resets
# PATH (jupyter_server_terminals starts one when its output is not a terminal: `make lab | tee log`).
jupyter_args+=("--ServerApp.terminado_settings=shell_command=${SHELL:-/bin/sh}")
echo "lab: JupyterLab opens on notebook 00; the URL with its token follows. Ctrl-C stops everything."
# Started in its root, where a new terminal opens, not in the repository.
(cd "$root" && trap '' INT && exec "$VENV/bin/jupyter" lab "${jupyter_args[@]}" --port "$PORT" --ServerApp.root_dir="$root" \
  --LabApp.default_url=/lab/tree/00-start-here.ipynb) &
jupyter_pid=$!
wait "$jupyter_pid"
