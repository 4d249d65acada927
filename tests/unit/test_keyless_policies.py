"""labkit.keyless_policies from a Sigstore's keys and trust files (no service runs): each document
carries the lab's trust where its engine reads it, and labkit's strict loader, which mirrors the
engines' CRDs, takes all four. tests/differential/test_keyless.py has the real engines enforce them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from labkit import keyless_policies
from labkit.errors import LabError
from labkit.keyless_policies import Identity
from labkit.lab.sigstore import LocalSigstore, SigstoreState
from labkit.lab.sigstore_trust import SigstoreURLs
from labkit.lab.state import LabHome, Service
from labkit.policy.load import load_objects

URLS = SigstoreURLs(oidc_issuer="http://127.0.0.1:9400", fulcio="http://127.0.0.1:5555",
                    rekor="http://127.0.0.1:3000", ctlog="http://127.0.0.1:6962")
ALICE = Identity("alice@example.com", URLS.oidc_issuer)


def _sigstore(home: Path, services: dict[str, Service]) -> LocalSigstore:
    sigstore = LocalSigstore(LabHome(home), SigstoreState(services, dict(vars(URLS))))
    sigstore.trust.ensure_keys()
    sigstore.trust.write_documents(URLS)
    sigstore.tuf.write(sigstore.trust.trusted_root)
    return sigstore


@pytest.fixture
def sigstore(tmp_path: Path) -> LocalSigstore:
    return _sigstore(tmp_path, {"tuf": Service(pid=1, port=8088, started=None)})


def test_each_engine_gets_the_labs_trust(sigstore: LocalSigstore) -> None:
    cpol, ivp, root, cip = keyless_policies.all_three(sigstore, [ALICE], kyverno_images=["r/a/*"],
                                                      ivp_images=["r/b/*"], policy_controller_images=["r/c/**"])
    trust = sigstore.trust
    [entry] = cpol["spec"]["rules"][0]["verifyImages"][0]["attestors"][0]["entries"]
    assert entry["keyless"] == {"subject": ALICE.subject, "issuer": ALICE.issuer,
                                "roots": trust.fulcio_cert.read_text().strip(),
                                "rekor": {"url": URLS.rekor, "pubkey": trust.rekor_pub.read_text().strip()},
                                "ctlog": {"pubkey": trust.ct_pub.read_text().strip()}}

    cosign = ivp["spec"]["attestors"][0]["cosign"]
    assert cosign["tuf"]["mirror"] == "http://127.0.0.1:8088"
    assert base64.b64decode(cosign["tuf"]["root"]["data"]) == sigstore.tuf.root_json.read_bytes()
    assert json.loads(sigstore.tuf.root_json.read_bytes())["signed"]["_type"] == "root"
    assert "ctlog" not in cosign  # the keys come from the TUF repository's trusted root

    keys = root["spec"]["sigstoreKeys"]
    assert base64.b64decode(keys["tLogs"][0]["publicKey"]).decode().strip() == trust.rekor_pub.read_text().strip()
    assert base64.b64decode(keys["certificateAuthorities"][0]["certChain"]).decode().strip() \
        == trust.fulcio_cert.read_text().strip()
    authority = cip["spec"]["authorities"][0]
    assert authority["keyless"]["trustRootRef"] == authority["ctlog"]["trustRootRef"] == root["metadata"]["name"]

    loaded = load_objects(yaml.safe_dump_all([cpol, ivp, root, cip]))
    assert [type(o).__name__ for o in loaded] == ["KyvernoPolicy", "ImageValidatingPolicy", "TrustRoot",
                                                   "ClusterImagePolicy"]


def test_one_entry_per_identity_and_one_is_enough(sigstore: LocalSigstore) -> None:
    bob = Identity("bob@example.com", URLS.oidc_issuer)
    cpol = keyless_policies.kyverno_cluster_policy("p", sigstore, [ALICE, bob], ["r/*"])
    attestors = cpol["spec"]["rules"][0]["verifyImages"][0]["attestors"]
    assert attestors[0]["count"] == 1
    assert [e["keyless"]["subject"] for e in attestors[0]["entries"]] == [ALICE.subject, bob.subject]


def test_a_sigstore_without_its_tuf_service_says_how_to_get_one(tmp_path: Path) -> None:
    older = _sigstore(tmp_path, {})
    with pytest.raises(LabError, match="serves no TUF repository") as caught:
        keyless_policies.kyverno_image_validating_policy("p", older, [ALICE], ["r/*"])
    assert "labkit lab up --sigstore" in caught.value.hint


def test_regexp_identities_use_each_crds_names(sigstore: LocalSigstore) -> None:
    anyone = Identity(subject_regexp="@example[.]com$", issuer=URLS.oidc_issuer)
    cpol, ivp, _, cip = keyless_policies.all_three(sigstore, [anyone], kyverno_images=["r/a/*"],
                                                   ivp_images=["r/b/*"], policy_controller_images=["r/c/**"])
    wanted = {"subjectRegExp": "@example[.]com$", "issuer": URLS.oidc_issuer}
    keyless = cpol["spec"]["rules"][0]["verifyImages"][0]["attestors"][0]["entries"][0]["keyless"]
    assert {k: keyless[k] for k in ("subjectRegExp", "issuer")} == wanted and "subject" not in keyless
    assert ivp["spec"]["attestors"][0]["cosign"]["keyless"]["identities"] == [wanted]
    assert cip["spec"]["authorities"][0]["keyless"]["identities"] == [wanted]
    load_objects(yaml.safe_dump_all([cpol, ivp, cip]))
