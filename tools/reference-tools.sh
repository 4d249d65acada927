#!/usr/bin/env bash
# Builds the reference tools labkit's tests use as oracles, from the Go module proxy,
# into a cache outside the repository. Idempotent: a tool already built is kept.
# Usage: tools/reference-tools.sh [NAME...]   (default: all)
# Prints nothing but a line per tool built; exits 0 when Go is missing (tests then skip).
set -euo pipefail

CACHE="${LABKIT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/labkit/tools}"
mkdir -p "$CACHE"

if ! command -v go >/dev/null 2>&1; then
  echo "reference-tools: Go is not installed; interop and conformance tests will skip." >&2
  exit 0
fi

# name|module/cmd path|version
TOOLS=(
  "cosign-v2.6.1|github.com/sigstore/cosign/v2/cmd/cosign|v2.6.1"
  "cosign-v2.6.5|github.com/sigstore/cosign/v2/cmd/cosign|v2.6.5"
  "cosign-v3.1.3|github.com/sigstore/cosign/v3/cmd/cosign|v3.1.3"
  "crane-v0.22.1|github.com/google/go-containerregistry/cmd/crane|v0.22.1"
)

want=("$@")
for row in "${TOOLS[@]}"; do
  IFS='|' read -r name pkg version <<<"$row"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " == *" $name "* ]]; then continue; fi
  out="$CACHE/$name"
  [ -x "$out" ] && continue
  tmp=$(mktemp -d)
  start=$(date +%s)
  GOBIN="$tmp" GOFLAGS="-buildvcs=false -trimpath" go install "$pkg@$version"
  mv "$tmp"/* "$out"
  rmdir "$tmp"
  echo "reference-tools: built $name in $(( $(date +%s) - start ))s -> $out"
done
