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
  # OCI distribution-spec conformance suite: a main package since its rewrite; the proxy serves
  # no v1.1.x tag of this module, only this pseudo-version.
  "oci-conformance-v0.0.0-20260831232431-97274622c111|github.com/opencontainers/distribution-spec/conformance|v0.0.0-20260831232431-97274622c111"
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

# Policy engines. Their go.mod files carry `replace` directives, so `go install pkg@version`
# refuses them (golang/go#44840). Build each from a throwaway wrapper module that requires the
# tool's module and repeats its replace lines and go directive; MVS then selects exactly the
# upstream dependency versions. Niced: these are large builds on shared cores.
# name|module|package|version
WRAPPED=(
  "kyverno-v1.19.1|github.com/kyverno/kyverno|github.com/kyverno/kyverno/cmd/cli/kubectl-kyverno|v1.19.1"
  "policy-tester-v0.13.1|github.com/sigstore/policy-controller|github.com/sigstore/policy-controller/cmd/tester|v0.13.1"
)

for row in "${WRAPPED[@]}"; do
  IFS='|' read -r name module pkg version <<<"$row"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " == *" $name "* ]]; then continue; fi
  out="$CACHE/$name"
  [ -x "$out" ] && continue
  tmp=$(mktemp -d)
  start=$(date +%s)
  (
    cd "$tmp"
    go mod init labkit.local/reference-tool >/dev/null 2>&1
    upstream=$(go mod download -json "$module@$version" | jq -r .GoMod)
    go mod edit -go="$(go mod edit -json "$upstream" | jq -r .Go)" -require="$module@$version"
    go mod edit -json "$upstream" \
      | jq -r '.Replace // [] | .[] | "-replace=\(.Old.Path)\(if .Old.Version then "@" + .Old.Version else "" end)=\(.New.Path)\(if .New.Version then "@" + .New.Version else "" end)"' \
      | xargs -r go mod edit
    GOFLAGS="-buildvcs=false -trimpath -mod=mod" nice -n 15 go build -o "$out.partial" "$pkg"
  )
  mv "$out.partial" "$out"
  rm -rf "$tmp"
  echo "reference-tools: built $name in $(( $(date +%s) - start ))s -> $out"
done
