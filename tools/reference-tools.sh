#!/usr/bin/env bash
# Builds, from the Go module proxy, the reference tools labkit's tests use as oracles and the real
# control plane and engines the native lab runs, into a cache outside the repository.
# Idempotent: a tool already built from the same pins is kept; a changed pin rebuilds it.
# Usage: tools/reference-tools.sh [NAME...]   (default: all but the optional ones)
#        tools/reference-tools.sh kyverno-v1.17.0   (optional: the native lab's second Kyverno,
#        from the version range with the ImageValidatingPolicy secret-lookup bug; docs/native-backend.md)
# Prints a line per tool built; exits 0 when Go is missing (the tests needing the tools then skip).
set -euo pipefail

CACHE="${LABKIT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/labkit/tools}"
HERE="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$CACHE"

if ! command -v go >/dev/null 2>&1; then
  echo "reference-tools: Go is not installed; interop, conformance and native-lab tests will skip." >&2
  exit 0
fi

want=("$@")
# Optional tools are built only when named, each by its own name or its group's: none is in `make tools`.
OPTIONAL=" kyverno-admission-controller-v1.17.0 kyverno-reports-controller-v1.17.0 kyverno-v1.17.0-config "
group() { case "$1" in *-v1.17.0|*-v1.17.0-config) [[ "$1" == kyverno-* ]] && echo kyverno-v1.17.0;; esac; }
wanted() {
  if [ ${#want[@]} -eq 0 ]; then [[ "$OPTIONAL" != *" $1 "* ]]; return; fi
  [[ " ${want[*]} " == *" $1 "* ]] || { [ -n "$(group "$1")" ] && [[ " ${want[*]} " == *" $(group "$1") "* ]]; }
}

# Tools `go install` builds directly. name|module/cmd path|version|build group (below)
TOOLS=(
  "cosign-v2.6.1|github.com/sigstore/cosign/v2/cmd/cosign|v2.6.1|oci"
  "cosign-v2.6.5|github.com/sigstore/cosign/v2/cmd/cosign|v2.6.5|oci"
  "cosign-v3.1.3|github.com/sigstore/cosign/v3/cmd/cosign|v3.1.3|oci"
  "crane-v0.22.1|github.com/google/go-containerregistry/cmd/crane|v0.22.1|oci"
  # OCI distribution-spec conformance suite: a main package since its rewrite; the proxy serves
  # no v1.1.x tag of this module, only this pseudo-version.
  "oci-conformance-v0.0.0-20260831232431-97274622c111|github.com/opencontainers/distribution-spec/conformance|v0.0.0-20260831232431-97274622c111|oci"
)

# The local Sigstore the lab starts with `labkit lab up --sigstore` (labkit/lab/sigstore.py): Fulcio,
# Rekor v1 on Trillian (log server and signer; MariaDB comes from system-deps) and a TesseraCT CT
# log. Pinned where they build with this Go (../shared/reference/keyless-offline.md); CGO off: only
# Fulcio's PKCS#11 CA and a zstd fast path would use it. The two POSIX mains are both called
# `posix`, hence the names.
TOOLS+=(
  "fulcio-v1.8.8|github.com/sigstore/fulcio|v1.8.8|sigstore"
  "rekor-server-v1.5.4|github.com/sigstore/rekor/cmd/rekor-server|v1.5.4|sigstore"
  "trillian_log_server-v1.8.0|github.com/google/trillian/cmd/trillian_log_server|v1.8.0|sigstore"
  "trillian_log_signer-v1.8.0|github.com/google/trillian/cmd/trillian_log_signer|v1.8.0|sigstore"
  "tesseract-posix-v0.1.1|github.com/transparency-dev/tesseract/cmd/tesseract/posix|v0.1.1|sigstore"
)

build_direct() {  # name|module/cmd path|version|group
  local name pkg version out tmp start
  IFS='|' read -r name pkg version _ <<<"$1"
  out="$CACHE/$name"
  [ -x "$out" ] && return 0
  tmp=$(mktemp -d)
  start=$(date +%s)
  CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="-buildvcs=false -trimpath" nice -n 10 go install -ldflags "-s -w" "$pkg@$version"
  mv "$tmp"/* "$out"
  rmdir "$tmp"
  echo "reference-tools: built $name in $(( $(date +%s) - start ))s -> $out"
}

# Tools whose modules carry `replace` directives, which `go install pkg@version` refuses
# (golang/go#44840): each is built inside a wrapper module committed under tools/go/ that
# requires the upstream module, repeats its replace lines and lists the commands as `tool`s, so
# MVS selects exactly the upstream dependency versions. The version ldflags are the upstream
# Makefiles' (without them kube-apiserver reports v0.0.0 and knative refuses to start).
K8S_VERSION=v1.36.3
K8S_LDFLAGS=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=36 -X $pkg.gitTreeState=clean"
done
KYVERNO_LDFLAGS="-X github.com/kyverno/kyverno/pkg/version.BuildVersion=v1.19.1"
KYVERNO_117_LDFLAGS="-X github.com/kyverno/kyverno/pkg/version.BuildVersion=v1.17.0"
PC_LDFLAGS="-X sigs.k8s.io/release-utils/version.gitVersion=v0.13.1"

# name|wrapper (tools/go/…)|package|ldflags
WRAPPED=(
  "etcd-v3.6.8|kubernetes|go.etcd.io/etcd/server/v3|"
  "kube-apiserver-$K8S_VERSION|kubernetes|k8s.io/kubernetes/cmd/kube-apiserver|$K8S_LDFLAGS"
  "kube-controller-manager-$K8S_VERSION|kubernetes|k8s.io/kubernetes/cmd/kube-controller-manager|$K8S_LDFLAGS"
  "kubectl-$K8S_VERSION|kubernetes|k8s.io/kubernetes/cmd/kubectl|$K8S_LDFLAGS"
  "kyverno-v1.19.1|kyverno|github.com/kyverno/kyverno/cmd/cli/kubectl-kyverno|$KYVERNO_LDFLAGS"
  "kyverno-admission-controller-v1.19.1|kyverno|github.com/kyverno/kyverno/cmd/kyverno|$KYVERNO_LDFLAGS"
  "kyverno-reports-controller-v1.19.1|kyverno|github.com/kyverno/kyverno/cmd/reports-controller|$KYVERNO_LDFLAGS"
  # optional (OPTIONAL above): v1.17.0, the last release whose ImageValidatingPolicy looked its
  # credentials.secrets up with no namespace (#15120, fixed in v1.17.1 by #15136)
  "kyverno-admission-controller-v1.17.0|kyverno-v1.17.0|github.com/kyverno/kyverno/cmd/kyverno|$KYVERNO_117_LDFLAGS"
  "kyverno-reports-controller-v1.17.0|kyverno-v1.17.0|github.com/kyverno/kyverno/cmd/reports-controller|$KYVERNO_117_LDFLAGS"
  "policy-tester-v0.13.1|policy-controller|github.com/sigstore/policy-controller/cmd/tester|$PC_LDFLAGS"
  "policy-controller-webhook-v0.13.1|policy-controller|github.com/sigstore/policy-controller/cmd/webhook|$PC_LDFLAGS"
)

pin() {  # what a built tool depends on: its wrapper's pins and its ldflags
  cat "$HERE/go/$1/go.mod" "$HERE/go/$1/go.sum" | sha256sum | cut -c1-16
  echo "$2"
}

build_wrapped() {  # name|wrapper (tools/go/…)|package|ldflags
  local name wrapper pkg ldflags out stamp start
  IFS='|' read -r name wrapper pkg ldflags <<<"$1"
  out="$CACHE/$name"
  stamp="$(pin "$wrapper" "$ldflags")"
  [ -x "$out" ] && [ "$(cat "$out.pin" 2>/dev/null)" = "$stamp" ] && return 0
  start=$(date +%s)
  # CGO off: only the standard library would use it. Niced: large builds on shared cores.
  (cd "$HERE/go/$wrapper" && CGO_ENABLED=0 GOFLAGS="-buildvcs=false -trimpath" \
    nice -n 10 go build -ldflags "-s -w $ldflags" -o "$out.partial" "$pkg")
  mv "$out.partial" "$out"
  echo "$stamp" > "$out.pin"
  echo "reference-tools: built $name in $(( $(date +%s) - start ))s -> $out"
}

# The builds run as groups, two groups at a time (LABKIT_TOOLS_JOBS): one `go build` keeps both
# cores busy while it compiles, but not while it downloads modules or links (one core), so a
# second group fills those gaps. A group (a wrapped row's wrapper module, a direct row's last
# field) is built in order, so its builds share compiled packages instead of compiling them twice.
wrapped_group() { IFS='|' read -r _ group _ <<<"$1"; echo "$group"; }
direct_group() { echo "${1##*|}"; }
run_group() {
  local row
  for row in "${WRAPPED[@]}"; do
    if wanted "${row%%|*}" && [ "$(wrapped_group "$row")" = "$1" ]; then build_wrapped "$row"; fi
  done
  for row in "${TOOLS[@]}"; do
    if wanted "${row%%|*}" && [ "$(direct_group "$row")" = "$1" ]; then build_direct "$row"; fi
  done
}
groups=()  # every row's group, in the rows' order (largest first)
for row in "${WRAPPED[@]}"; do groups+=("$(wrapped_group "$row")"); done
for row in "${TOOLS[@]}"; do groups+=("$(direct_group "$row")"); done
JOBS="${LABKIT_TOOLS_JOBS:-2}"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for group in $(printf '%s\n' "${groups[@]}" | awk '!seen[$0]++'); do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done
  run_group "$group" &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
pids=()
[ "$failed" -eq 0 ] || { echo "reference-tools: a build failed (its output is above)" >&2; exit 1; }

# Trillian's MySQL schema, which the lab loads into its MariaDB: from the module just built.
if wanted trillian-v1.8.0-schema; then
  out="$CACHE/trillian-v1.8.0-storage.sql"
  if [ ! -s "$out" ]; then
    GOFLAGS=-mod=mod go mod download github.com/google/trillian@v1.8.0
    cp "$(go env GOMODCACHE)/github.com/google/trillian@v1.8.0/storage/mysql/schema/storage.sql" "$out.partial"
    chmod u+w "$out.partial" && mv "$out.partial" "$out"
    echo "reference-tools: copied trillian-v1.8.0-schema -> $out"
  fi
fi

# The engines' own release objects the native lab creates (CRDs, ConfigMaps, webhook
# configurations), copied from the same module versions the binaries were built from.
# name|wrapper|module|files (relative to the module; dir/ copies a tree)
CONFIGS=(
  "kyverno-v1.19.1-config|kyverno|github.com/kyverno/kyverno|config/crds/ charts/kyverno/values.yaml"
  "kyverno-v1.17.0-config|kyverno-v1.17.0|github.com/kyverno/kyverno|config/crds/ charts/kyverno/values.yaml"
  "policy-controller-v0.13.1-config|policy-controller|github.com/sigstore/policy-controller|config/"
)
for row in "${CONFIGS[@]}"; do
  IFS='|' read -r name wrapper module files <<<"$row"
  wanted "$name" || continue
  out="$CACHE/$name"
  stamp="$(pin "$wrapper" "")"
  [ -d "$out" ] && [ "$(cat "$out.pin" 2>/dev/null)" = "$stamp" ] && continue
  dir=$(cd "$HERE/go/$wrapper" && go list -m -f '{{.Dir}}' "$module")
  rm -rf "$out.partial" && mkdir -p "$out.partial"
  for f in $files; do
    if [ "${f%/}" != "$f" ]; then cp -r "$dir/$f." "$out.partial/$(basename "$f")"; else cp "$dir/$f" "$out.partial/"; fi
  done
  chmod -R u+w "$out.partial"
  rm -rf "$out" && mv "$out.partial" "$out"
  echo "$stamp" > "$out.pin"
  echo "reference-tools: copied $name -> $out"
done
