"""Reading a GitHub Actions workflow for the one property notebook 09 teaches: every ``cosign
sign`` signs a digest that comes from the build step's output, never a tag.

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
_DIGEST_OUTPUT = re.compile(r"^\$\{\{\s*steps\.([A-Za-z0-9_-]+)\.outputs\.digest\s*\}\}$")
_SHELL_VAR = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")
_PINNED = re.compile(r"^[^@]+@[0-9a-f]{40}$")
# cosign sign flags that take a value as the next word (cmd/cosign/cli/options/sign.go)
_VALUE_FLAGS = {"--key", "-a", "--annotations", "--output-signature", "--output-payload", "--output-certificate",
                "--certificate", "--certificate-chain", "--identity-token", "--fulcio-url", "--rekor-url",
                "--oidc-issuer", "--oidc-client-id", "--attachment", "--registry-username", "--registry-password",
                "--signing-config", "--trusted-root", "--bundle", "--payload"}


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str  # one sentence, naming the job and step


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
    """One finding per ``cosign sign`` (signs a build output digest?) and per ``uses:`` (pinned?)."""
    findings: list[Finding] = []
    for job_name, job in load_workflow(path)["jobs"].items():
        steps = [s for s in (job or {}).get("steps") or [] if isinstance(s, Mapping)]
        builds = {s["id"] for s in steps if s.get("id") and "build-push-action" in str(s.get("uses", ""))}
        env = {k: str(v) for k, v in ((job or {}).get("env") or {}).items()}
        for index, step in enumerate(steps):
            label = step.get("name") or step.get("id") or str(step.get("uses", "")).split("@")[0] or index + 1
            where = f"job {job_name}, step {label}"
            if "uses" in step and not str(step["uses"]).startswith("./"):
                pinned = bool(_PINNED.match(str(step["uses"])))
                findings.append(Finding(pinned, f"{where}: {step['uses'].split('@')[0]} is "
                                        + ("pinned to a commit" if pinned else "not pinned to a commit SHA")))
            step_env = {**env, **{k: str(v) for k, v in (step.get("env") or {}).items()}}
            findings.extend(_sign_findings(str(step.get("run") or ""), step_env, builds, where))
    return findings


def _sign_findings(script: str, env: Mapping[str, str], builds: set[str], where: str) -> Iterator[Finding]:
    for line in script.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if words[:2] != ["cosign", "sign"]:
            continue
        images = _positional(words[2:])
        if not images:
            yield Finding(False, f"{where}: cosign sign names no image")
        for image in images:
            yield _by_build_digest(image, env, builds, where)


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
    if "@" not in image:
        return Finding(False, f"{where}: signs {image}, a tag — sign IMAGE@DIGEST from the build step's output")
    digest = image.rsplit("@", 1)[1]
    var = _SHELL_VAR.match(digest)
    source = env.get(var.group(1), "") if var else digest
    output = _DIGEST_OUTPUT.match(source.strip())
    if output and output.group(1) in builds:
        return Finding(True, f"{where}: signs the digest output by step {output.group(1)!r}")
    return Finding(False, f"{where}: signs {image}, whose digest is not the build step's output "
                   "(steps.<build id>.outputs.digest)")
