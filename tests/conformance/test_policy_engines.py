"""labkit's admission decisions against the real engines on the shared corpus in ``cases/``.

Each case directory holds ``policy.yaml``, ``resource.yaml``, ``case.yaml`` and, when it needs
signed images, ``images.yaml`` (see ``cases/README.md``). For every case labkit must reach
``expect``; then the oracle for the policy's engine must reach the same decision and print the
same text:

* Kyverno policies: ``kyverno apply`` (Kyverno CLI v1.19.1), whose summary counts are pinned too;
* ClusterImagePolicies: policy-controller's ``tester`` (v0.13.1), once per container image.

Cases with ``images.yaml`` are materialised in Debian's distribution registry: a one-layer image
pushed with crane, signed by real cosign v2.6.1 (legacy ``.sig``, no transparency log). Every
tool runs with a dead loopback proxy, so nothing can leave the machine (Go never proxies
loopback, so the registry stays reachable).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit.errors import PolicyError
from labkit.policy.credentials import RegistryAccess
from labkit.policy.phases import Decision, evaluate
from labkit.policy.load import load_policies
from labkit.policy.podspec import Engine, extract_images
from labkit.policy.verification import Resolver, Verifier
from tests.conftest import COSIGN_V2_PIN, CRANE, RunningRegistry, reference_tool

CASES = Path(__file__).parent / "cases"
KYVERNO = "kyverno-v1.19.1"
POLICY_TESTER = "policy-tester-v0.13.1"
_COUNTS = re.compile(r"pass: (\d+), fail: (\d+), warn: (\d+), error: (\d+), skip: (\d+)")
_PLACEHOLDER = re.compile(r"\$\{(REGISTRY|DIGEST|PUBLIC_KEY)(?::([a-z0-9-]+))?\}")


def offline_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "TUF_ROOT": str(home / ".sigstore"),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
        "COSIGN_PASSWORD": "",
    }


def run_tool(tool: Path, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool), *args], cwd=cwd, env={**offline_env(cwd), **(env or {})}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=300, check=False,
    )


@dataclass
class Case:
    name: str
    source: Path

    @property
    def spec(self) -> dict[str, Any]:
        return yaml.safe_load((self.source / "case.yaml").read_text())

    @property
    def needs_registry(self) -> bool:
        return (self.source / "images.yaml").is_file()

    @property
    def engine(self) -> Engine:
        text = (self.source / "policy.yaml").read_text()
        return Engine.POLICY_CONTROLLER if "policy.sigstore.dev/" in text else Engine.KYVERNO


@dataclass
class Rendered:
    """A case with its placeholders filled, written to a scratch directory."""

    case: str
    directory: Path
    spec: dict[str, Any]
    resource: dict[str, Any]
    verifier: Verifier
    resolver: Resolver | None = None

    @property
    def expect(self) -> dict[str, Any]:
        return self.spec["expect"]


ALL = [Case(p.name, p) for p in sorted(CASES.iterdir()) if (p / "case.yaml").is_file()]
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "policy-agreement.md"
# case → column → decision, filled by the tests below and printed as the agreement table
AGREEMENT: dict[str, dict[str, str]] = {}
DIFFERS = " †"  # marks a tool decision that the case documents as different by design


def record(case: str, column: str, decision: str) -> None:
    AGREEMENT.setdefault(case, {})[column] = decision


@pytest.fixture(scope="module", autouse=True)
def agreement_table() -> Any:
    """After the module: case × engine × decision, in ``test-artifacts/policy-agreement.md``."""
    yield
    if not AGREEMENT:
        return
    columns = ["expected", "labkit", "labkit CLI", "kyverno apply v1.19.1", "tester v0.13.1"]
    lines = ["# Admission decisions: labkit against the real engines", "",
             "| case | " + " | ".join(columns) + " | agree |", "|---" * (len(columns) + 2) + "|"]
    for case in sorted(AGREEMENT):
        row = AGREEMENT[case]
        # a policy the CLI cannot compile shows as a rule error, its way of rejecting it
        seen = {"invalid" if v == "error" and row.get("expected") == "invalid" else v
                for k, v in row.items() if k != "expected" and not v.endswith(DIFFERS)}
        agree = "yes" if seen == {row.get("expected")} else "NO"
        lines.append(f"| {case} | " + " | ".join(row.get(c, "–") for c in columns) + f" | {agree} |")
    if any(v.endswith(DIFFERS) for row in AGREEMENT.values() for v in row.values()):
        lines += ["", f"{DIFFERS.strip()} the tool lacks the webhook behaviour the case tests (`tester.differs`, "
                  "cases/README.md): its decision is pinned, not compared."]
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))


def cases(engine: Engine | None = None) -> list[Any]:
    return [pytest.param(c, id=c.name) for c in ALL if engine is None or c.engine is engine]


def offline_verifier(ref: str, keys: Sequence[Any], **options: Any) -> Any:
    raise AssertionError(f"an offline case asked to verify {ref}")


def substitute(text: str, values: Mapping[tuple[str, str], str]) -> str:
    """Fill placeholders; a PUBLIC_KEY placeholder alone on its line keeps that indentation."""
    out = []
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        m = _PLACEHOLDER.fullmatch(stripped)
        if m and m[1] == "PUBLIC_KEY":
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(f"{indent}{pem_line}\n" for pem_line in values[(m[1], m[2])].splitlines())
            continue
        out.append(_PLACEHOLDER.sub(lambda x: values[(x[1], x[2] or "")], line))
    return "".join(out)


def layer_tar(content: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def build_state(case: Case, work: Path, registry: RunningRegistry) -> dict[tuple[str, str], str]:
    """Push and sign the case's images; each case gets its own repository prefix."""
    state = yaml.safe_load((case.source / "images.yaml").read_text())
    crane, cosign = reference_tool(CRANE), reference_tool(COSIGN_V2_PIN)
    prefix = f"{registry.host}/{case.name}"
    values: dict[tuple[str, str], str] = {("REGISTRY", ""): prefix}
    for key in state.get("keys", []):
        gen = run_tool(cosign, "generate-key-pair", "--output-key-prefix", key, cwd=work)
        assert gen.returncode == 0, gen.stderr
        values[("PUBLIC_KEY", key)] = (work / f"{key}.pub").read_text().strip()
    for image in state["images"]:
        (work / "layer.tar").write_bytes(layer_tar(f"{case.name}/{image['name']}\n".encode()))
        ref = f"{prefix}/{image['repository']}:{image['tag']}"
        push = run_tool(crane, "append", "-f", "layer.tar", "-t", ref, cwd=work)
        assert push.returncode == 0, push.stderr
        digest = run_tool(crane, "digest", ref, cwd=work)
        assert digest.returncode == 0, digest.stderr
        values[("DIGEST", image["name"])] = digest.stdout.strip()
        # signature_repository: cosign keeps the signatures in another repository (COSIGN_REPOSITORY)
        elsewhere = {"COSIGN_REPOSITORY": f"{prefix}/{image['signature_repository']}"} \
            if image.get("signature_repository") else None
        for key in image.get("signed_with") or []:
            sign = run_tool(cosign, "sign", "--key", f"{key}.key", "--tlog-upload=false", "-y",
                            f"{prefix}/{image['repository']}@{digest.stdout.strip()}", cwd=work, env=elsewhere)
            assert sign.returncode == 0, sign.stderr
    by_name = {image["name"]: image for image in state["images"]}
    for image in state["images"]:
        repo = f"{prefix}/{image['repository']}"
        if "signature_copied_from" in image:
            # another image's signature, copied byte for byte under this digest's .sig tag
            source = by_name[image["signature_copied_from"]]
            sig = values[("DIGEST", source["name"])].replace(":", "-") + ".sig"
            mine = values[("DIGEST", image["name"])].replace(":", "-") + ".sig"
            copy = run_tool(crane, "copy", f"{prefix}/{source['repository']}:{sig}", f"{repo}:{mine}", cwd=work)
            assert copy.returncode == 0, copy.stderr
        if "tag_moved_to" in image:
            # after signing, the tag is pushed again with another image's content
            target = by_name[image["tag_moved_to"]]
            move = run_tool(crane, "copy", f"{prefix}/{target['repository']}@{values[('DIGEST', target['name'])]}",
                            f"{repo}:{image['tag']}", cwd=work)
            assert move.returncode == 0, move.stderr
    return values


def registry_access(stack: Any) -> RegistryAccess:
    pytest.importorskip("labkit.signing.verify", reason="labkit.signing.verify has not landed")
    from labkit.oci.client import RegistryClient

    access = RegistryAccess(stack.enter_context(RegistryClient()))
    stack.callback(access.close)
    return access


@pytest.fixture
def rendered(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    from contextlib import ExitStack

    case: Case = request.param
    values: dict[tuple[str, str], str] = {}
    with ExitStack() as stack:
        verifier: Verifier = offline_verifier
        resolver: Resolver | None = None
        if case.needs_registry:
            registry = request.getfixturevalue("distribution_registry")
            values = build_state(case, tmp_path, registry)
            verifier = access = registry_access(stack)
            resolver = access.resolve
        for name in ("policy.yaml", "resource.yaml", "case.yaml"):
            (tmp_path / name).write_text(substitute((case.source / name).read_text(), values))
        yield Rendered(
            case.name,
            tmp_path,
            yaml.safe_load((tmp_path / "case.yaml").read_text()),
            yaml.safe_load((tmp_path / "resource.yaml").read_text()),
            verifier,
            resolver,
        )


def _word(expect: Mapping[str, Any]) -> str:
    return "invalid" if "invalid" in expect else ("admit" if expect["allowed"] else "deny")


def assert_invalid_text(text: str, expect: Mapping[str, Any]) -> None:
    assert expect["invalid"] in text
    if "invalid_reason" in expect:
        assert expect["invalid_reason"] in text


@pytest.mark.parametrize("rendered", cases(), indirect=True)
def test_labkit(rendered: Rendered) -> None:
    def decide() -> Decision:
        return evaluate(
            load_policies(rendered.directory / "policy.yaml"),
            rendered.resource,
            namespace_labels=rendered.spec.get("namespace_labels") or {},
            verifier=rendered.verifier,
            resolver=rendered.resolver,
        )

    expect = rendered.expect
    record(rendered.case, "expected", _word(expect))
    if "invalid" in expect:
        with pytest.raises(PolicyError) as err:
            decide()
        assert_invalid_text(err.value.message, expect)
        record(rendered.case, "labkit", "invalid")
        return
    decision = decide()
    record(rendered.case, "labkit", "admit" if decision.allowed else "deny")
    assert decision.allowed is expect["allowed"], decision.message
    if "message" in expect:
        assert decision.message == expect["message"]
    if "message_contains" in expect:
        assert expect["message_contains"] in decision.message
    if "warnings" in expect:
        assert decision.warnings == expect["warnings"]
    if "trace" in expect:
        assert [t.status for t in decision.trace] == expect["trace"]
    if "patches" in expect:
        assert decision.patches == expect["patches"]


@pytest.mark.parametrize("rendered", cases(Engine.KYVERNO), indirect=True)
def test_kyverno_cli_agrees(rendered: Rendered) -> None:
    kyverno = reference_tool(KYVERNO)
    extra = rendered.spec["kyverno"].get("args", [])
    run = run_tool(kyverno, "apply", "policy.yaml", "--resource", "resource.yaml", *extra,
                   cwd=rendered.directory)
    found = _COUNTS.search(run.stdout)
    assert found, run.stdout + run.stderr
    counts = dict(zip(("pass", "fail", "warn", "error", "skip"), map(int, found.groups()), strict=True))
    oracle, expect = rendered.spec["kyverno"], rendered.expect
    record(rendered.case, "kyverno apply v1.19.1",
           "invalid" if "Policies Skipped:" in run.stdout
           else "admit" if counts["fail"] == 0 and counts["error"] == 0
           else "deny" if counts["fail"] else "error")
    assert counts == oracle["counts"], run.stdout + run.stderr
    if "contains" in oracle:
        assert oracle["contains"] in run.stdout
    if "invalid" in expect:
        # an invalid policy is listed under "Policies Skipped" and counted as an error; an IVP
        # whose CEL does not compile is instead an error result, whose text only the report shows
        if oracle.get("invalid_as") == "error":
            report = run_tool(kyverno, "apply", "policy.yaml", "--resource", "resource.yaml",
                              "--policy-report", cwd=rendered.directory)
            # the report is YAML (long messages folded); the CLI prefixes "failed to compile policy: "
            messages = " ".join(r["message"] for r in yaml.safe_load(report.stdout)["results"])
            assert_invalid_text(messages, expect)
        else:
            assert "Policies Skipped:" in run.stdout
            assert_invalid_text(run.stdout, expect)
        assert run.returncode == 1
    else:
        admitted = counts["fail"] == 0 and counts["error"] == 0
        assert admitted is expect["allowed"]
        assert run.returncode == (0 if admitted else 1)


@pytest.mark.parametrize("rendered", cases(Engine.POLICY_CONTROLLER), indirect=True)
def test_policy_controller_tester_agrees(rendered: Rendered) -> None:
    tester = reference_tool(POLICY_TESTER)
    images = extract_images(rendered.resource, Engine.POLICY_CONTROLLER) or []
    assert images, "a ClusterImagePolicy case needs a resource with containers"
    runs = [
        run_tool(tester, "-policy", "policy.yaml", "-image", c.image, "-log-level", "error",
                 cwd=rendered.directory)
        for c in images
    ]
    rc = max(r.returncode for r in runs)
    text = "".join(r.stdout + r.stderr for r in runs)
    oracle, expect = rendered.spec["tester"], rendered.expect
    # tester.differs: webhook behaviour the tester lacks; its own decision is pinned, not compared
    record(rendered.case, "tester v0.13.1",
           ("invalid" if "CIP is invalid: " in text else "admit" if rc == 0 else "deny")
           + (DIFFERS if "differs" in oracle else ""))
    assert rc == oracle["exit"], text
    if "invalid" in expect:
        # log.Fatalf("CIP is invalid: …") wraps the webhook's text in the tester's own FieldError
        assert "CIP is invalid: " in text
        assert_invalid_text(text, expect)
        return
    assert (rc == 0) is (expect["allowed"] is not ("differs" in oracle))
    if "contains" in oracle:
        assert oracle["contains"] in text
    for r in runs:
        if r.returncode == 1:  # one JSON line on stdout: {"errors": […], "warnings": […]}
            assert json.loads(r.stdout)["errors"]


@pytest.mark.parametrize("rendered", cases(), indirect=True)
def test_labkit_cli(rendered: Rendered, capsys: pytest.CaptureFixture[str]) -> None:
    """``labkit policy test`` wires the real registry verifier: same decision, exit 0/1/2."""
    from labkit.cli import main

    labels = ",".join(f"{k}={v}" for k, v in (rendered.spec.get("namespace_labels") or {}).items())
    code = main(["policy", "test", "--policy", str(rendered.directory / "policy.yaml"),
                 "--resource", str(rendered.directory / "resource.yaml"), "--namespace-labels", labels])
    out = capsys.readouterr()
    record(rendered.case, "labkit CLI", {0: "admit", 1: "deny", 2: "invalid"}.get(code, f"exit {code}"))
    if "invalid" in rendered.expect:
        assert code == 2 and rendered.expect["invalid"] in out.err
    else:
        assert code == (0 if rendered.expect["allowed"] else 1), out.out + out.err
        if "message" in rendered.expect:
            assert rendered.expect["message"] in out.out
