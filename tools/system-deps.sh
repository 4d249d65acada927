#!/usr/bin/env bash
# Installs the Debian packages the tests use, when missing: peers (distribution's registry),
# the browser for the JupyterLab test, and MariaDB for the local Sigstore's Rekor (Trillian's store).
# Needs root and apt; elsewhere it says what is missing and the tests needing it skip.
set -euo pipefail

need=()
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
[ -x /usr/bin/chromium ] || need+=(chromium)  # the JupyterLab browser test drives it with Playwright
[ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)  # labkit lab up --sigstore runs its own, on loopback
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${need[*]} (install with apt as root); tests that need them will skip." >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
# The package starts a system registry on :5000; the tests run their own on loopback.
# So does MariaDB's, on :3306; the lab starts its own under LABKIT_HOME.
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now docker-registry mariadb >/dev/null 2>&1 || true
fi
echo "system-deps: installed ${need[*]}"
