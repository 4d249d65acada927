"""Notebook 11's steps: keyless signing against the lab's own Sigstore, shown without its secrets.

The token is a credential: it is passed to ``labkit sign`` through ``SIGSTORE_ID_TOKEN`` (as CI
does) and never printed; only its claims are. Each signer gets its own repository holding the same
sample image, so each ``.sig`` image carries one identity's signature.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from labkit import keyless_policies, workshop
from labkit.keyless_policies import Identity

if TYPE_CHECKING:
    from labkit.lab import Lab
    from labkit.lab.sigstore import LocalSigstore

SIGNERS = {"alice": "alice@example.com", "bob": "bob@example.com", "lookalike": "alice@example.com.evil.test"}
REPOSITORY = "workshop/keyless-{who}"
POLICY_NAME = "keyless-images"
CLAIMS = ("iss", "aud", "sub", "email", "email_verified")


def images(lab: Lab) -> dict[str, str]:
    """The sample, pushed once per signer (``workshop/keyless-alice`` …), as pods name it, by digest."""
    return {who: _push(lab, REPOSITORY.format(who=who)) for who in SIGNERS}


def _push(lab: Lab, repository: str) -> str:
    """The sample built and pushed as ``repository:v1``; its reference as pods name it, by digest."""
    workshop.copy_sample()
    pushed = workshop.run(f"labkit build hello-app -t {lab.registry.host}/{repository}:v1 --push", show=False)
    if not pushed.ok:
        raise RuntimeError(pushed.transcript())
    return f"{lab.registry.pod_host}/{repository}@{pushed.stdout.strip().rsplit('@', 1)[1]}"


def tagged(lab: Lab) -> dict[str, str]:
    """The signers' images as pods name them, by tag (what a checkpoint asks admission about)."""
    return {who: f"{lab.registry.pod_host}/{REPOSITORY.format(who=who)}:v1" for who in SIGNERS}


def claims(token: str) -> dict[str, Any]:
    """What a JWT claims (its payload, not verified: Fulcio verifies it against the issuer's keys)."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def show_claims(token: str) -> None:
    found = claims(token)
    for name in CLAIMS:
        print(f"{name:>15}: {found.get(name)}")
    print(f"{'valid for':>15}: {(int(found['exp']) - int(found['iat'])) // 60} minutes")


@contextlib.contextmanager
def _token_in_env(token: str) -> Iterator[None]:
    previous = os.environ.get("SIGSTORE_ID_TOKEN")
    os.environ["SIGSTORE_ID_TOKEN"] = token
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("SIGSTORE_ID_TOKEN", None)
        else:
            os.environ["SIGSTORE_ID_TOKEN"] = previous


def sign(lab: Lab, image: str, email: str, *, flags: str = "", show: bool = True) -> workshop.CommandResult:
    """``labkit sign`` keyless as ``email`` (with ``flags``, e.g. a format's), against the lab's
    Fulcio and Rekor (the push host)."""
    sigstore = lab.sigstore
    ref = image.replace(lab.registry.pod_host, lab.registry.host, 1)
    with _token_in_env(sigstore.token(email)):
        return workshop.run(f"labkit sign -y {flags + ' ' if flags else ''}--fulcio-url {sigstore.urls.fulcio} "
                            f"--rekor-url {sigstore.urls.rekor} {ref}", show=show)


@dataclass(frozen=True)
class Found:
    """One verified keyless signature: who, vouched for by whom, when, and where in the log."""

    subject: str
    issuer: str
    not_before: str
    not_after: str
    lifetime_minutes: int
    log_index: int

    def summary(self) -> str:
        return "\n".join([f"certificate for: {self.subject}", f"issued through:  {self.issuer}",
                          f"valid:           {self.not_before} to {self.not_after} "
                          f"({self.lifetime_minutes} minutes)", f"Rekor log index: {self.log_index}"])


def signature(lab: Lab, image: str, email: str) -> Found:
    """``image``'s keyless signature by ``email``, verified against the lab's trust root."""
    from labkit.oci.client import RegistryClient
    from labkit.signing.blob_bundle import CertificateIdentity
    from labkit.signing.keyless_trust import KeylessTrust
    from labkit.signing.keyless_verify import KeylessPolicy, verify_image_keyless

    sigstore = lab.sigstore
    trust = KeylessTrust.load(sigstore.trust.trusted_root)
    policy = KeylessPolicy(CertificateIdentity(identity=email, issuer=sigstore.urls.oidc_issuer))
    with RegistryClient() as client:
        verified = verify_image_keyless(image.replace(lab.registry.pod_host, lab.registry.host, 1), trust, policy,
                                        client=client)
    first = verified.signatures[0]
    cert = first.certificate
    log_index = int((first.rekor_bundle or {}).get("Payload", {}).get("logIndex", -1))
    return Found(first.subject, first.issuer, f"{cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}",
                 f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}",
                 int((cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds()) // 60, log_index)


def rekor_entry(sigstore: LocalSigstore, index: int) -> str:
    """Rekor's entry at ``index`` as anyone can read it (``GET /api/v1/log/entries?logIndex=N``)."""
    answer = httpx.get(f"{sigstore.urls.rekor}/api/v1/log/entries", params={"logIndex": index}, timeout=10.0,
                       trust_env=False).raise_for_status().json()
    ((_, entry),) = answer.items()
    body = json.loads(base64.b64decode(entry["body"]))
    spec = body["spec"]
    return "\n".join([f"entry at index {entry['logIndex']}",
                      f"kind: {body['kind']} {body['apiVersion']}",
                      f"signed data: its {spec['data']['hash']['algorithm']} digest (the payload's, not the image's)",
                      "signature and certificate: in the entry (the certificate is the one above)",
                      f"inclusion proof against tree size {entry['verification']['inclusionProof']['treeSize']}"
                      if "inclusionProof" in entry.get("verification", {}) else "signed entry timestamp: present"])


def write_policy(lab: Lab, target: str | Path, *, subject_regexp: str) -> Path:
    """Notebook 11's ClusterPolicy, trusting identities matching ``subject_regexp`` from the lab's
    issuer, for the ``workshop/keyless-*`` repositories (written to the workshop directory)."""
    policy = keyless_policies.kyverno_cluster_policy(
        POLICY_NAME, lab.sigstore, [Identity(SIGNERS["alice"], lab.sigstore.urls.oidc_issuer)],
        [f"{lab.registry.pod_host}/{REPOSITORY.format(who='*')}"])
    entries = policy["spec"]["rules"][0]["verifyImages"][0]["attestors"][0]["entries"]
    trusted = entries[0]["keyless"]
    del trusted["subject"]
    entries[0]["keyless"] = {"subjectRegExp": subject_regexp, **trusted}
    path = workshop.workdir() / target
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def show_policy(path: str | Path) -> str:
    """A policy file as YAML, each PEM block (the lab's CA and log keys) shortened to its first line."""
    def shorten(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: shorten(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shorten(v) for v in value]
        if isinstance(value, str) and value.startswith("-----BEGIN"):
            return value.splitlines()[0] + " …"
        return value

    return yaml.safe_dump(shorten(yaml.safe_load(Path(path).read_text())), sort_keys=False, width=200,
                          allow_unicode=True)


def verify(lab: Lab, image: str, identity: str) -> workshop.CommandResult:
    """``labkit verify`` by identity with the lab's issuer, shown with cosign's header and, of its
    JSON, who signed and where the log holds it (the rest is the Rekor receipt, shown in step 3)."""
    result = workshop.run(f"labkit verify --certificate-identity {identity} --certificate-oidc-issuer "
                          f"{lab.sigstore.urls.oidc_issuer} {image}", show=False)
    lines = [f"$ {' '.join(['labkit', *result.argv])}", *result.stderr.rstrip().splitlines()]
    if result.ok:
        for claims in json.loads(result.stdout):
            optional = claims["optional"]
            lines.append(f"  Subject: {optional['Subject']}  Issuer: {optional['Issuer']}  "
                         f"logIndex: {optional['Bundle']['Payload']['logIndex']}")
    else:
        lines.append(f"[exit code {result.exit_code}]")
    print("\n".join(lines))
    return result


# --- notebook 12: one image, three signature formats, three engines ------------------------------

ENGINES = ("kyverno-cpol", "kyverno-ivp", "policy-controller")
FORMATS = {  # how cosign signs in each format, as labkit's flags (the same as cosign's)
    "cosign-v2-legacy": "",
    "cosign-v3-default": "--new-bundle-format",
    "cosign-v3-legacy-flags": "--new-bundle-format=false --use-signing-config=false",
}
FORMAT_REPOSITORY = "workshop/formats-{engine}/{fmt}"
FORMAT_NAMESPACE = "formats"  # opted in to policy-controller; Kyverno's pods stay in default
# What the real engines answered (tests/differential/test_keyless.py records and checks it)
FORMAT_MATRIX = Path(__file__).parent / "samples" / "keyless_format_matrix.yaml"
TABLE = "formats.yaml"


def format_images(lab: Lab) -> dict[tuple[str, str], str]:
    """The sample in one repository per engine and format, as pods name it, by digest."""
    return {(engine, fmt): _push(lab, FORMAT_REPOSITORY.format(engine=engine, fmt=fmt))
            for engine in ENGINES for fmt in FORMATS}


def sign_format(lab: Lab, image: str, fmt: str, *, show: bool = True) -> workshop.CommandResult:
    """Sign ``image`` keyless as alice in ``fmt`` (:data:`FORMATS`)."""
    return sign(lab, image, SIGNERS["alice"], flags=FORMATS[fmt], show=show)


def format_policies(lab: Lab) -> list[dict[str, Any]]:
    """The three engines' keyless policies for alice, each over its own repositories."""
    host = lab.registry.pod_host
    return keyless_policies.all_three(
        lab.sigstore, [Identity(SIGNERS["alice"], lab.sigstore.urls.oidc_issuer)], prefix="formats",
        kyverno_images=[f"{host}/workshop/formats-kyverno-cpol/*"],
        ivp_images=[f"{host}/workshop/formats-kyverno-ivp/*"],
        policy_controller_images=[f"{host}/workshop/formats-policy-controller/**"])


def ask(lab: Lab, image: str, engine: str) -> str:
    """Whether ``engine``'s policy admits a pod running ``image`` (a server dry run): ``admitted`` or
    ``denied``, and the engine's reason when denied."""
    from labkit.lab import pod

    namespace = lab.namespace(FORMAT_NAMESPACE) if engine == "policy-controller" else lab.namespace("default")
    result = lab.create(pod("formats", image, namespace), dry_run=True)
    return "admitted" if result.admitted else "denied: " + result.message.splitlines()[-1].strip()


def recorded_matrix() -> dict[str, dict[str, str]]:
    """The real engines' table: format → engine → admitted/denied."""
    matrix = yaml.safe_load(FORMAT_MATRIX.read_text())["matrix"]
    return {str(f): {str(e): str(v) for e, v in row.items()} for f, row in matrix.items()}


def write_table(target: str = TABLE) -> Path:
    """The learner's table to fill in: every cell ``?``."""
    path = workshop.workdir() / target
    if not path.exists():
        path.write_text("# admitted or denied, per format (rows) and engine (columns)\n"
                        + yaml.safe_dump({fmt: dict.fromkeys(ENGINES, "?") for fmt in FORMATS}, sort_keys=False))
    return path


def fresh_tuf_client(lab: Lab) -> None:
    """Kyverno's TUF client is one per process and keeps the first mirror it is given (see
    docs/keyless.md): on the native lab, Kyverno starts afresh, so the lab's TUF repository is its
    first. The embedded lab fetches the trust root afresh each time; elsewhere, restart Kyverno's
    admission controller (kubectl rollout restart) before the ImageValidatingPolicy."""
    restart = getattr(lab, "restart_kyverno", None)
    if callable(restart):
        restart()
