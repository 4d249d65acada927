"""Reading a GitHub Actions workflow for what notebook 09 teaches:

* every ``cosign sign`` signs a digest that comes from the build step's output, never a tag;
* it signs in the classic ``sha256-<digest>.sig`` format, the one the lab's ClusterPolicy
  (``type: Cosign``) and policy-controller read — cosign v3 signs Sigstore bundles by default;
* every ``uses:`` is pinned to a commit;
* a build for another CPU than the runner's sets up QEMU first;
* image names built from ``github.repository`` are lower-cased (registries refuse upper case);
* keyless signing (no ``--key``) runs in a job allowed to ask for an OIDC token (``id-token: write``),
  and the identity its certificate will carry is the one a policy pins (:func:`github_keyless_identity`).

    findings = check_workflow(TEMPLATE)  # labkit/samples/github-actions/sign-by-digest.yml
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit._internal.yamlsafe import YAMLInputError, load_all
from labkit.errors import UsageError

TEMPLATE = Path(__file__).resolve().parent / "samples" / "github-actions" / "sign-by-digest.yml"
KEYLESS_TEMPLATE = TEMPLATE.with_name("sign-keyless.yml")
# Fulcio's github-workflow issuer (config/identity/config.yaml): the token's issuer, and the SAN
# template "{{ .url }}/{{ .job_workflow_ref }}" with url https://github.com
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_URL = "https://github.com"
_DIGEST_OUTPUT = re.compile(r"^\$\{\{\s*steps\.([A-Za-z0-9_-]+)\.outputs\.digest\s*\}\}$")
_SHELL_VAR = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")
_PINNED = re.compile(r"^[^@]+@[0-9a-f]{40}$")
# cosign sign flags that take a value as the next word (cmd/cosign/cli/options/sign.go)
_VALUE_FLAGS = {"--key", "-a", "--annotations", "--output-signature", "--output-payload", "--output-certificate",
                "--certificate", "--certificate-chain", "--identity-token", "--fulcio-url", "--rekor-url",
                "--oidc-issuer", "--oidc-client-id", "--attachment", "--registry-username", "--registry-password",
                "--signing-config", "--trusted-root", "--bundle", "--payload"}
CLASSIC_FLAGS = "--new-bundle-format=false --use-signing-config=false"

# sigstore/cosign-installer: commit of each release → (release, its default cosign-release), read
# from action.yml at each tag. Installers from v4.0.0 install cosign v3.
_INSTALLERS = {
    "c3980f109a569dfb3693a68717dbf5c364743ab5": ("v3.0.0", "v1.13.1"),
    "41d4f4d837df20f1ef015f6d24b78584cb492a2d": ("v3.0.1", "v2.0.0"),
    "0f983226cbf1ee0368469d3e2b33417ceec4c225": ("v3.0.2", "v2.0.1"),
    "edd1f3c6605f811b1ec9f4c2c204b535c00bd54b": ("v3.0.3", "v2.0.2"),
    "b6fc91790eda82dbba10c76a63507d45b818c83d": ("v3.0.4", "v2.0.2"),
    "dd6b2e2b610a11fd73dd187a43d57cc1394e35f9": ("v3.0.5", "v2.0.2"),
    "d13028333d784fcc802b67ec924bcebe75aa0a5f": ("v3.1.0", "v2.1.0"),
    "6e04d228eb30da1757ee4e1dd75a0ec73a653e06": ("v3.1.1", "v2.1.1"),
    "11086d25041f77fe8fe7b9ea4e48e3b9192b8f19": ("v3.1.2", "v2.2.0"),
    "1fc5bd396d372bee37d608f955b336615edf79c8": ("v3.2.0", "v2.2.1"),
    "9614fae9e5c5eddabb09f90a270fcb487c9f7149": ("v3.3.0", "v2.2.2"),
    "e1523de7571e31dbe865fd2e80c5c7c23ae71eb4": ("v3.4.0", "v2.2.3"),
    "59acb6260d9c0ba8f4a2f9d9b48431a222b68e20": ("v3.5.0", "v2.2.4"),
    "4959ce089c160fddf62f7b42464195ba1a56d382": ("v3.6.0", "v2.4.0"),
    "dc72c7d5c4d10cd6bcb8cf6e3fd625a9e5e537da": ("v3.7.0", "v2.4.1"),
    "c56c2d3e59e4281cc41dea2217323ba5694b171e": ("v3.8.0", "v2.4.2"),
    "d7d6bc7722e3daa8354c50bcb52f4837da5e9b6a": ("v3.8.1", "v2.4.3"),
    "3454372f43399081ed03b604cb2d021dabca52bb": ("v3.8.2", "v2.4.3"),
    "fb28c2b6339dcd94da6e4cbcbc5e888961f6f8c3": ("v3.9.0", "v2.5.0"),
    "398d4b0eeef1380460a10c8013a76f728fb906ac": ("v3.9.1", "v2.5.2"),
    "d58896d6a1865668819e1d91763c7751a165e159": ("v3.9.2", "v2.5.3"),
    "d7543c93d881b35a8faa02e8e3605f69b7a1ce62": ("v3.10.0", "v2.6.0"),
    "7e8b541eb2e61bf99390e1afd4be13a184e9ebc5": ("v3.10.1", "v2.6.1"),
    "faadad0cce49287aee09b3a48701e75088a2c6ad": ("v4.0.0", "v3.0.2"),
    "ba7bc0a3fef59531c69a25acd34668d6d3fe6f22": ("v4.1.0", "v3.0.3"),
    "cad07c2e89fa2edd6e2d7bab4c1aa38e53f76003": ("v4.1.1", "v3.0.5"),
    "6f9f17788090df1f26f669e9d70d6ae9567deba6": ("v4.1.2", "v3.0.6"),
}
_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?")
# Go's strconv.ParseBool, which cosign's boolean flags (and their COSIGN_* variables) go through
_TRUE, _FALSE = {"1", "t", "T", "true", "TRUE", "True"}, {"0", "f", "F", "false", "FALSE", "False"}
# an image name made of the repository's name: `…/${{ github.repository }}`, `…/$GITHUB_REPOSITORY`
_REPO_EXPR = (r"\$\{\{\s*github\.repository(?:_owner)?\s*\}\}"
              r"|\$\{?GITHUB_REPOSITORY(?:_OWNER)?(?![A-Za-z0-9_,])\}?")
# what stands before `/NAME` in an image reference: a registry host, or an expression that holds one
_BEFORE_NAME = (r"(?:(?<![\w.-])(?:[\w-]+\.)+[\w-]+(?::\d+)?|(?<![\w.-])localhost(?::\d+)?"
                r"|\$\{\{[^{}]*\}\}|\$\{?[A-Za-z_]\w*\}?)")
_NOT_A_REGISTRY = re.compile(r"github\.com|githubusercontent\.com|server_url", re.IGNORECASE)
_LOWERED = re.compile(r"\$\{GITHUB_REPOSITORY(?:_OWNER)?,,\}|\btr\s+['\"]?(?:\[:upper:\]|A-Z)")
_ARCH_ALIASES = {"x86_64": "amd64", "x64": "amd64", "aarch64": "arm64", "arm64": "arm64", "amd64": "amd64"}


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str  # one sentence, naming the job and step
    fix: str = ""  # for a failing finding: what to change, precisely


@dataclass(frozen=True)
class _Cosign:
    """The cosign a job installs: its version (``None`` when unknowable) and how that was found."""

    version: str | None
    source: str

    @property
    def major_minor(self) -> tuple[int, int] | None:
        match = _VERSION.match(self.version or "")
        return (int(match.group(1)), int(match.group(2) or 0)) if match else None

    @property
    def signs_bundles_by_default(self) -> bool:
        known = self.major_minor
        return known is None or known[0] >= 3  # unknown: assume today's cosign, v3

    @property
    def name(self) -> str:
        return f"cosign {self.version}" if self.version else "cosign"


def load_workflow(path: str | Path) -> dict[str, Any]:
    try:
        docs = load_all(Path(path).read_bytes())  # the safe loader: a workflow file is user input
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except YAMLInputError as exc:
        raise UsageError(f"{path}: {exc}", hint=exc.hint) from None
    doc = docs[0] if docs else None
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), dict):
        raise UsageError(f"{path} is not a GitHub Actions workflow (no jobs:)")
    return doc


def check_workflow(path: str | Path) -> list[Finding]:
    """One finding per ``cosign sign`` (signs a build output digest? in the classic format?), per
    ``uses:`` (pinned?), per cross-CPU build (QEMU first?) and per image name from
    ``github.repository`` (lower-cased?)."""
    doc = load_workflow(path)
    workflow_env = _strings(doc.get("env"))
    findings: list[Finding] = list(_name_findings(_prefixed("env", workflow_env), "workflow", workflow_env))
    for job_name, job in doc["jobs"].items():
        job = job if isinstance(job, Mapping) else {}
        steps = [s for s in job.get("steps") or [] if isinstance(s, Mapping)]
        builds = {s["id"] for s in steps if s.get("id") and _action(s) == "docker/build-push-action"}
        env = {**workflow_env, **_strings(job.get("env"))}
        cosign = _installed_cosign(steps)
        token = _may_request_id_token(job.get("permissions", doc.get("permissions")))
        findings.extend(_name_findings(_prefixed("env", _strings(job.get("env"))), f"job {job_name}", env))
        for index, step in enumerate(steps):
            where = f"job {job_name}, step {_label(step, index)}"
            if "uses" in step and not str(step["uses"]).startswith("./"):
                pinned = bool(_PINNED.match(str(step["uses"])))
                action = str(step["uses"]).split("@")[0]
                findings.append(Finding(pinned, f"{where}: {action} is "
                                        + ("pinned to a commit" if pinned else "not pinned to a commit SHA"),
                                        f"pin {action} to a full commit SHA, with the release as a comment "
                                        f"(uses: {action}@<40 hex digits> # vX.Y.Z)"))
            step_env = {**env, **_strings(step.get("env"))}
            script = str(step.get("run") or "")
            findings.extend(_sign_findings(script, step_env, builds, cosign, where, token))
            findings.extend(_qemu_findings(steps, index, job.get("runs-on"), where))
            names = {**_prefixed("env", _strings(step.get("env"))), "run": script}
            if _action(step) != "docker/metadata-action":  # it lower-cases the images it is given
                names.update(_prefixed("with", _strings(step.get("with"))))
            findings.extend(_name_findings(names, where, step_env))
    return findings


def _strings(mapping: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in mapping.items()} if isinstance(mapping, Mapping) else {}


def _prefixed(prefix: str, values: Mapping[str, str]) -> dict[str, str]:
    return {f"{prefix} {key}": value for key, value in values.items()}


def _action(step: Mapping[str, Any]) -> str:
    return str(step.get("uses", "")).split("@")[0]


def _label(step: Mapping[str, Any], index: int) -> str:
    return str(step.get("name") or step.get("id") or _action(step) or index + 1)


def _commands(script: str) -> Iterator[list[str]]:
    """Each line of a ``run:`` script as shell words, backslash-continued lines joined."""
    for line in re.sub(r"\\\r?\n", " ", script).splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if words:
            yield words


def github_keyless_identity(repository: str, workflow: str, ref: str = "refs/heads/main") -> tuple[str, str]:
    """(issuer, identity) of a certificate Fulcio issues to a GitHub Actions job: the SAN is the
    job's ``job_workflow_ref`` claim (``OWNER/REPO/.github/workflows/FILE@REF``) after
    ``https://github.com/``. ``workflow`` is the file name under ``.github/workflows/``."""
    return GITHUB_ISSUER, f"{GITHUB_URL}/{repository}/.github/workflows/{workflow}@{ref}"


def _may_request_id_token(permissions: Any) -> bool:
    """Whether a job's ``permissions`` (else the workflow's) let it ask GitHub for an OIDC token."""
    if permissions == "write-all":
        return True
    return isinstance(permissions, Mapping) and permissions.get("id-token") == "write"


def _keyless(args: list[str], env: Mapping[str, str]) -> bool:
    """cosign sign with neither a key (``--key``, ``COSIGN_KEY``) nor a token it was handed:
    it will ask the CI's OIDC provider for one."""
    given = {a.split("=", 1)[0] for a in args}
    return not ({"--key", "--identity-token", "--sk"} & given) and not env.get("COSIGN_KEY") \
        and not env.get("SIGSTORE_ID_TOKEN")


def _sign_findings(script: str, env: Mapping[str, str], builds: set[str], cosign: _Cosign,
                   where: str, may_request_token: bool) -> Iterator[Finding]:
    for words in _commands(script):
        if Path(words[0]).name != "cosign" or words[1:2] != ["sign"]:  # cosign, ./cosign, $HOME/…/cosign
            continue
        images = _positional(words[2:])
        if not images:
            yield Finding(False, f"{where}: cosign sign names no image", 'name the image: "${IMAGE}@${DIGEST}"')
        for image in images:
            yield _by_build_digest(image, env, builds, where)
        yield _signature_format(words[2:], env, cosign, where)
        if _keyless(words[2:], env):
            yield Finding(may_request_token,
                          f"{where}: signs keyless" + (", and the job may ask GitHub for an OIDC token (id-token: "
                                                      "write)" if may_request_token else
                                                      ", but the job may not ask GitHub for an OIDC token"),
                          "give the job `permissions: {id-token: write}` (with what else it needs, e.g. "
                          "packages: write), or sign with a key (--key)")


def _positional(args: list[str]) -> list[str]:
    """cosign sign's image arguments: what is neither a flag nor a flag's value."""
    images, skip = [], False
    for word in args:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = "=" not in word and word in _VALUE_FLAGS
        else:
            images.append(word)
    return images


def _by_build_digest(image: str, env: Mapping[str, str], builds: set[str], where: str) -> Finding:
    fix = 'sign "${IMAGE}@${DIGEST}", with DIGEST: ${{ steps.build.outputs.digest }} in the step\'s env'
    if "@" not in image:
        return Finding(False, f"{where}: signs {image}, a tag — sign IMAGE@DIGEST from the build step's output", fix)
    digest = image.rsplit("@", 1)[1]
    var = _SHELL_VAR.match(digest)
    source = env.get(var.group(1), "") if var else digest
    output = _DIGEST_OUTPUT.match(source.strip())
    if output and output.group(1) in builds:
        return Finding(True, f"{where}: signs the digest output by step {output.group(1)!r}")
    return Finding(False, f"{where}: signs {image}, whose digest is not the build step's output "
                   "(steps.<build id>.outputs.digest)", fix)


# --- the signature's format: what cosign v3 writes by default, the lab's policies cannot read --------


def _installed_cosign(steps: list[Mapping[str, Any]]) -> _Cosign:
    for step in steps:
        if _action(step) != "sigstore/cosign-installer":
            continue
        release = _strings(step.get("with")).get("cosign-release")
        if release:
            return _Cosign(release if _VERSION.match(release) else None, f"cosign-release: {release}")
        ref = str(step.get("uses", "")).partition("@")[2]
        if ref in _INSTALLERS:
            installer, default = _INSTALLERS[ref]
            return _Cosign(default, f"the default of sigstore/cosign-installer {installer}")
        tag = _VERSION.match(ref)
        if tag:  # a tag (not pinned: another finding says so); v4 and later install cosign v3
            return _Cosign("v3" if int(tag.group(1)) >= 4 else "v2",
                           f"the default of sigstore/cosign-installer {ref}")
        return _Cosign(None, "sigstore/cosign-installer at a commit labkit does not know, counted as v3: "
                       "every installer since v4.0.0 installs cosign v3")
    return _Cosign(None, "no sigstore/cosign-installer step, so the version is unknown, counted as v3")


def _bool_option(args: list[str], name: str, env: Mapping[str, str]) -> bool | None:
    """A cosign boolean flag as cosign would read it: the last ``--name[=value]`` on the command
    line, else ``COSIGN_NAME`` from the environment (cosign binds every flag to one), else None."""
    value: bool | None = None
    for word in args:
        if word == f"--{name}":
            value = True
        elif word.startswith(f"--{name}="):
            text = word.split("=", 1)[1]
            value = True if text in _TRUE else False if text in _FALSE else value
    variable = env.get("COSIGN_" + name.upper().replace("-", "_"))
    if value is None and variable is not None:
        value = True if variable in _TRUE else False if variable in _FALSE else None
    return value


def _signature_format(args: list[str], env: Mapping[str, str], cosign: _Cosign, where: str) -> Finding:
    default = cosign.signs_bundles_by_default
    bundle = _bool_option(args, "new-bundle-format", env)
    signing_config = _bool_option(args, "use-signing-config", env)
    config_file = any(w == "--signing-config" or w.startswith("--signing-config=") for w in args) \
        or bool(env.get("COSIGN_SIGNING_CONFIG"))
    named = f"{cosign.name} ({cosign.source})"
    known = cosign.major_minor
    if known is not None and known < (2, 6) and (bundle is not None or signing_config is not None):
        return Finding(False, f"{where}: {named} has no --new-bundle-format or --use-signing-config flag "
                       "(both came in v2.6.0), so cosign sign fails",
                       "drop both flags, or install cosign v3 (cosign-release: v3.x.y) and keep them")
    if bundle if bundle is not None else default:
        return Finding(False, f"{where}: {named} signs in the Sigstore bundle format (an OCI referrer, no "
                       "sha256-<digest>.sig tag), which the lab's ClusterPolicy (type: Cosign) and "
                       "policy-controller's key authorities cannot read, so they deny the image",
                       f"add {CLASSIC_FLAGS} to cosign sign (both: cosign v3 refuses the first alone)")
    if config_file or (signing_config if signing_config is not None else default):
        return Finding(False, f"{where}: {named} refuses --new-bundle-format=false while it uses a signing "
                       "config (--use-signing-config is on by default in v3, or --signing-config is given), "
                       "so cosign sign fails",
                       "add --use-signing-config=false to cosign sign (and drop any --signing-config)")
    return Finding(True, f"{where}: {named} signs in the classic sha256-<digest>.sig format, which the lab's "
                   "ClusterPolicy (type: Cosign) and policy-controller read")


# --- builds for another CPU: QEMU ---------------------------------------------------------------------


def _runner_arch(runs_on: Any) -> str:
    labels = [str(x) for x in runs_on] if isinstance(runs_on, list) else [str(runs_on or "")]
    return "arm64" if any(re.search(r"arm", label, re.IGNORECASE) for label in labels) else "amd64"


def _platforms(value: Any) -> list[str]:
    items = value if isinstance(value, list) else re.split(r"[,\s]+", str(value or ""))
    return [str(p).strip() for p in items if str(p).strip()]


def _arch(platform: str) -> str:
    parts = platform.split("/")
    arch = parts[1] if len(parts) > 1 else parts[0]
    return _ARCH_ALIASES.get(arch.lower(), arch.lower())


def _qemu_findings(steps: list[Mapping[str, Any]], index: int, runs_on: Any, where: str) -> Iterator[Finding]:
    step = steps[index]
    if _action(step) != "docker/build-push-action":
        return
    runner = _runner_arch(runs_on)
    foreign = [p for p in _platforms(_strings(step.get("with")).get("platforms")) if _arch(p) != runner]
    if not foreign:
        return
    what = f"{where}: builds {', '.join(foreign)} on an {runner} runner"
    fix = ("add `- uses: docker/setup-qemu-action@<commit> # vX.Y.Z` (with: platforms: "
           f"{','.join(sorted({_arch(p) for p in foreign}))}) before docker/setup-buildx-action, "
           "or build each platform on a runner of its own CPU (runs-on: ubuntu-24.04-arm for arm64)")
    qemu = [s for s in steps[:index] if _action(s) == "docker/setup-qemu-action"]
    if not qemu:
        yield Finding(False, f"{what} without docker/setup-qemu-action before it: the Dockerfile's RUN steps "
                      "fail with 'exec format error'", fix)
        return
    installed = _platforms(_strings(qemu[-1].get("with")).get("platforms", "all"))
    missing = sorted({_arch(p) for p in foreign} - {_arch(p) for p in installed}) if "all" not in installed else []
    if missing:
        yield Finding(False, f"{what}, but docker/setup-qemu-action installs emulators only for "
                      f"{', '.join(installed)}, not {', '.join(missing)}", fix)
    else:
        yield Finding(True, f"{what}, with QEMU set up first (docker/setup-qemu-action)")


# --- image names: lower case -------------------------------------------------------------------------


def _name_pattern(env: Mapping[str, str]) -> re.Pattern[str]:
    """``/NAME`` after a registry, where NAME is the repository's name or an env variable holding it
    (``IMAGE_NAME: ${{ github.repository }}`` then ``ghcr.io/${{ env.IMAGE_NAME }}``)."""
    names = [_REPO_EXPR] + [rf"\$\{{\{{\s*env\.{re.escape(k)}\s*\}}\}}|\$\{{?{re.escape(k)}(?![A-Za-z0-9_,])\}}?"
                            for k, v in env.items() if re.search(_REPO_EXPR, v)]
    return re.compile(rf"(?P<before>{_BEFORE_NAME})/(?P<name>{'|'.join(names)})")


def _name_findings(values: Mapping[str, str], where: str, env: Mapping[str, str]) -> Iterator[Finding]:
    pattern = _name_pattern(env)
    for key, value in values.items():
        label = f"{where}, {key}"
        lowered = _LOWERED.search(value) if key == "run" else None
        if lowered:
            yield Finding(True, f"{label}: lower-cases the image name ({lowered.group(0)})")
            continue
        match = next((m for m in pattern.finditer(value) if not _NOT_A_REGISTRY.search(m.group("before"))), None)
        if match:
            yield Finding(False, f"{label}: names an image with {match.group('name')}, which keeps the owner's "
                          "upper case (My-Org/App), and registries accept only lower-case repository names",
                          'set the name in a step, run: echo "IMAGE=ghcr.io/${GITHUB_REPOSITORY,,}" >> '
                          '"$GITHUB_ENV", then use ${{ env.IMAGE }} (bash lower-cases with ,,)')
