"""``labkit policy lint`` against the real policy-controller v0.13.1 webhook, case by case.

Oracle: the native lab's kube-apiserver with policy-controller's CRDs and its defaulting and
validating webhooks (``validating.clusterimagepolicy.sigstore.dev``). Every object of
``policy_controller_lint_cases.yaml`` is created there with a server-side dry run; labkit's lint
must give the same verdict and name the same field paths. Where the cluster rejects, labkit's
message must be its text (after the prefix kubectl adds; the causes of a CRD schema error in any
order); where it admits with warnings, labkit's warnings must be kubectl's ``Warning:`` lines.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from labkit._internal.tools import tools_dir
from labkit.errors import PolicyError
from labkit.lab import Lab
from labkit.policy.load import load_objects
from labkit.policy.policy_controller_webhooks import cip_warnings
from labkit.policy.schema import ClusterImagePolicy

CASES = Path(__file__).with_name("policy_controller_lint_cases.yaml")
_PATH = re.compile(r"\bspec(?:\.[A-Za-z0-9-]+|\[\d+\])*")
# what kubectl puts before the API server's or webhook's own text
_PREFIX = re.compile(r'^(?:Error from server(?: \(\w+\))?: )?(?:admission webhook "[^"]+" denied the request: )?')


def _certificate(key: ec.EllipticCurvePrivateKey, name: str, *, ca: bool) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "labkit"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def materials() -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    rsa_pub = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    root = {"signed": {"_type": "root", "version": 1}, "signatures": [{"keyid": "k", "sig": "00"}]}
    return {
        "{PUBKEY}": pub.decode(),
        "{PUBKEY_B64}": b64(pub),
        "{RSA_PUBKEY}": rsa_pub.decode(),
        "{CERT_PEM}": _certificate(key, "ca", ca=True).decode(),
        "{CHAIN_B64}": b64(_certificate(key, "ca", ca=True)),
        "{TSA_CHAIN_B64}": b64(_certificate(key, "tsa-a", ca=False) + _certificate(key, "tsa-b", ca=False)),
        "{ROOT_B64}": b64(json.dumps(root).encode()),
        "{NOSIG_ROOT_B64}": b64(json.dumps({"signed": root["signed"]}).encode()),
        "{ARRAY_B64}": b64(b"[1, 2]"),
        "{BADJSON_B64}": b64(b'{"signatures": [1,]}'),
        "{NULLJSON_B64}": b64(b"null"),
        "{SHORTJSON_B64}": b64(b'{"signatures": [1.'),
        "{CHAIN_JUNK_B64}": b64(_certificate(key, "tsa", ca=False) + b"trailing text\n"),
    }


def _fill(value: Any, subs: dict[str, str]) -> Any:
    if isinstance(value, str):
        return subs.get(value, value)
    if isinstance(value, list):
        return [_fill(v, subs) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, subs) for k, v in value.items()}
    return value


def documents() -> list[tuple[str, dict[str, Any]]]:
    subs = materials()
    docs = []
    for case in yaml.safe_load(CASES.read_text()):
        name = case["name"]
        meta = {"name": name}
        if "trustroot" in case:
            doc = {"apiVersion": "policy.sigstore.dev/v1alpha1", "kind": "TrustRoot", "metadata": meta,
                   "spec": case["trustroot"]}
        else:
            spec = case.get("cip") or {"images": [{"glob": "ghcr.io/labkit/**"}],
                                       "authorities": [case["authority"]]}
            doc = {"apiVersion": f"policy.sigstore.dev/{case.get('version', 'v1beta1')}",
                   "kind": "ClusterImagePolicy", "metadata": meta, "spec": spec}
        docs.append((name, _fill(doc, subs)))
    return docs


def lint(doc: dict[str, Any]) -> tuple[bool, str]:
    """labkit's verdict and its message without the ``<policy>: `` it names the input by."""
    return lint_with_warnings(doc)[:2]


def lint_with_warnings(doc: dict[str, Any]) -> tuple[bool, str, list[str]]:
    try:
        (obj,) = load_objects(yaml.safe_dump(doc))
    except PolicyError as exc:
        return False, exc.message.removeprefix("<policy>: "), []
    return True, "", cip_warnings(obj) if isinstance(obj, ClusterImagePolicy) else []


def core(message: str) -> str:
    """The API server's or webhook's own text of a kubectl error: kubectl's ``The X "n" is
    invalid`` and its bulleted causes turned back into the API server's ``X.group "n" is invalid:
    [a, b]``, which labkit prints."""
    text = _PREFIX.sub("", message.strip())
    text = re.sub(r'^The (\w+) "', r'\1.policy.sigstore.dev "', text)
    head, bullets, rest = text.partition(": \n* ")
    return f"{head}: [{', '.join(rest.split(chr(10) + '* '))}]" if bullets else text


def paths(message: str) -> set[str]:
    return set(_PATH.findall(message))


_CAUSE = re.compile(r", (?=(?:spec|metadata)\.)")


def comparable(message: str) -> str:
    """A message with its aggregate's causes sorted (the API server lists a CRD schema's errors
    in no fixed order)."""
    head, bracket, rest = message.partition(" is invalid: [")
    if not bracket:
        return message
    return f"{head} is invalid: [{', '.join(sorted(_CAUSE.split(rest.removesuffix(']'))))}]"


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Lab:
    """The session's native lab; without its binaries these cases skip (the oracle is absent)."""
    from labkit.lab.native import missing_binaries

    if missing := missing_binaries():
        pytest.skip(f"the native lab's {', '.join(missing)} are not in {tools_dir()} (`make tools` builds "
                    "them): the real policy-controller webhook these cases are checked against cannot run")
    native: Lab = request.getfixturevalue("native_lab")
    return native


DOCS = documents()


@pytest.mark.parametrize("doc", [d for _, d in DOCS], ids=[n for n, _ in DOCS])
def test_lint_agrees_with_the_real_webhook(lab: Lab, doc: dict[str, Any]) -> None:
    real = lab.create(doc, dry_run=True)
    ok, message, warnings = lint_with_warnings(doc)
    assert (ok, paths(message)) == (real.admitted, paths("" if real.admitted else real.message)), real.message
    if not ok:
        assert comparable(message) == comparable(core(real.message))
    assert warnings == list(real.warnings)
