"""The admission webhook over real HTTPS, against labkit's registry with labkit-signed images.

Oracles: the server is verified with the CA it generated (httpx ``verify=``) and the chain with
``openssl verify``; signatures are made by ``labkit.signing.sign`` (itself checked against real
cosign in test_sign_cosign.py); the expected denial texts are Kyverno's ``block.go`` layout and
policy-controller's knative ``validation failed: …`` as quoted in the reference fact sheets.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from labkit import keys
from labkit.admission import serve
from labkit.oci.client import RegistryClient
from labkit.oci.model import OCI_CONFIG, OCI_LAYER, Descriptor, Image, Manifest, sha256_digest
from labkit.oci.reference import Reference
from labkit.policy.patches import apply_patches
from labkit.signing.sign import sign_image
from tests.peers import free_port
from tests.unit.test_client_hostile import hostile_registry, trickle_manifest
from tests.lab.scenario import OFFLINE

pytestmark = pytest.mark.interop


def _push(client: RegistryClient, ref: str, content: bytes) -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(content)]}}).encode()
    image = Image(manifest=Manifest(config=Descriptor.of(OCI_CONFIG, config),
                                    layers=(Descriptor.of(OCI_LAYER, content),)),
                  config=config, layers=[content])
    return client.push_image(Reference.parse(ref), image)


def _kyverno(name: str, pattern: str, pem: str, *, action: str = "Enforce", failure_policy: str = "Fail") -> str:
    enforce = action == "Enforce"
    rule = {"name": name, "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "verifyImages": [{"imageReferences": [pattern], "failureAction": action,
                              "mutateDigest": enforce, "verifyDigest": enforce,
                              "attestors": [{"entries": [{"keys": {"publicKeys": pem.strip(), **OFFLINE}}]}]}]}
    return yaml.safe_dump({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": name},
                           "spec": {"failurePolicy": failure_policy, "rules": [rule]}})


def _cip(name: str, glob: str, pem: str) -> str:
    return yaml.safe_dump({"apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy",
                           "metadata": {"name": name},
                           "spec": {"images": [{"glob": glob}], "authorities": [{"key": {"data": pem.strip()}}]}})


def review(images: list[str], *, name: str = "app", namespace: str = "default", uid: str | None = None) -> dict[str, Any]:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid or str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": namespace, "operation": "CREATE", "object": pod}}


class Lab:
    def __init__(self, root: Path, host: str) -> None:
        self.root, self.host = root, host
        self.policies = root / "policies"
        self.policies.mkdir()
        (root / "state").mkdir()
        (root / "state" / "namespaces.json").write_text(json.dumps({"pc": {"policy.sigstore.dev/include": "true"}}))
        keys.generate_key_pair(root / "a", b"")
        self.pem = (root / "a.pub").read_text()
        private = keys.load_private_key(root / "a.key", b"")
        with RegistryClient() as client:
            self.signed = _push(client, f"{host}/webhook/signed:v1", b"signed\n")
            self.unsigned = _push(client, f"{host}/webhook/unsigned:v1", b"unsigned\n")
            _push(client, f"{host}/audit/unsigned:v1", b"audit\n")
            sign_image(f"{host}/webhook/signed@{self.signed}", private, client=client)
        self.down = f"127.0.0.1:{free_port()}"  # nothing listens here
        (self.policies / "kyverno.yaml").write_text(_kyverno("check-image", f"{host}/webhook/*", self.pem))
        (self.policies / "cip.yaml").write_text(_cip("signed-by-a", f"{host}/webhook/**", self.pem))
        (self.policies / "audit.yaml").write_text(_kyverno("audit-image", f"{host}/audit/*", self.pem, action="Audit"))
        (self.policies / "down-fail.yaml").write_text(_kyverno("down-fail", f"{self.down}/fail/*", self.pem))
        (self.policies / "down-ignore.yaml").write_text(
            _kyverno("down-ignore", f"{self.down}/ignore/*", self.pem, failure_policy="Ignore"))
        self.handle = serve(self.policies, port=0, home=root / "home", state=root / "state")
        self.http = httpx.Client(base_url=self.handle.url, verify=ssl.create_default_context(
            cafile=str(self.handle.tls.ca_cert)), timeout=20)

    def post(self, path: str, doc: Any) -> dict[str, Any]:
        resp = self.http.post(path, json=doc)
        assert resp.status_code == 200, resp.text
        return resp.json()["response"]


@pytest.fixture(scope="module")
def lab(labkit_registry, tmp_path_factory: pytest.TempPathFactory):
    lab = Lab(tmp_path_factory.mktemp("webhook"), labkit_registry.host)
    yield lab
    lab.http.close()
    lab.handle.stop()


def _patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    assert response["patchType"] == "JSONPatch"
    return json.loads(base64.b64decode(response["patch"]))


def test_kyverno_admits_signed_and_pins_digest(lab: Lab) -> None:
    image = f"{lab.host}/webhook/signed:v1"
    doc = review([image], uid="uid-signed")
    response = lab.post("/mutate/kyverno", doc)
    assert response["uid"] == "uid-signed" and response["allowed"] is True
    patch = _patch(response)
    assert {"op": "replace", "path": "/spec/containers/0/image", "value": f"{image}@{lab.signed}"} in patch
    annotation = next(p for p in patch if p["path"].endswith("kyverno.io~1verify-images"))
    assert json.loads(annotation["value"]) == {f"{lab.host}/webhook/signed@{lab.signed}": "pass"}
    # the validating webhook sees the mutated object: pinned, and scoped-annotated as verified
    mutated = review([f"{image}@{lab.signed}"])
    mutated["request"]["object"] = apply_patches(doc["request"]["object"], patch)
    assert lab.post("/validate/kyverno", mutated)["allowed"] is True
    # without the mutating webhook's annotation, Kyverno's validating webhook refuses it
    bare = lab.post("/validate/kyverno", review([f"{image}@{lab.signed}"]))
    assert bare["allowed"] is False
    assert f"unverified image {lab.host}/webhook/signed@{lab.signed}" in bare["status"]["message"]


def test_kyverno_denies_unsigned_with_block_message(lab: Lab) -> None:
    image = f"{lab.host}/webhook/unsigned:v1"
    response = lab.post("/mutate/kyverno", review([image], name="unsigned"))
    assert response["allowed"] is False and "patch" not in response
    message = response["status"]["message"]
    assert message.startswith("\n\nresource Pod/default/unsigned was blocked due to the following policies \n\n")
    assert "check-image:\n  check-image: " in message
    assert f"failed to verify image {image}: .attestors[0].entries[0].keys: no signatures found" in message


def test_policy_controller_resolves_tags_then_validates(lab: Lab) -> None:
    image = f"{lab.host}/webhook/signed:v1"
    patch = _patch(lab.post("/mutate/policy-controller", review([image], namespace="pc")))
    assert patch == [{"op": "replace", "path": "/spec/containers/0/image", "value": f"{image}@{lab.signed}"}]
    # outside the opted-in namespace the mutating webhook leaves the pod alone
    assert "patch" not in lab.post("/mutate/policy-controller", review([image], namespace="default"))
    assert lab.post("/validate/policy-controller", review([patch[0]["value"]], namespace="pc"))["allowed"] is True


def test_policy_controller_denies_unsigned_and_tags(lab: Lab) -> None:
    unsigned = f"{lab.host}/webhook/unsigned@{lab.unsigned}"
    response = lab.post("/validate/policy-controller", review([unsigned], namespace="pc"))
    assert response["allowed"] is False
    assert response["status"]["message"].startswith(
        "validation failed: failed policy: signed-by-a: spec.containers[0].image\n" + unsigned)
    tag = f"{lab.host}/webhook/signed:v1"
    response = lab.post("/validate/policy-controller", review([tag], namespace="pc"))
    assert response["status"]["message"] == (
        f"validation failed: invalid value: {tag} must be an image digest: spec.containers[0].image")


@pytest.mark.parametrize("body, needle", [
    (b"{not json", "not JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                 "request": {"uid": "x"}}).encode(), "expected apiVersion admission.k8s.io/v1"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(), "has no request"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                 "request": {"object": {}}}).encode(), "has no uid"),
])
def test_malformed_reviews_get_400(lab: Lab, body: bytes, needle: str) -> None:
    resp = lab.http.post("/validate/kyverno", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400 and needle in resp.json()["error"]


def test_oversize_body_gets_400_and_server_lives(lab: Lab) -> None:
    resp = lab.http.post("/validate/kyverno", content=b" " * (3 * 1024 * 1024 + 1))
    assert resp.status_code == 400 and "limit" in resp.json()["error"]
    assert lab.http.get("/healthz").status_code == 200


def test_registry_down_follows_failure_policy(lab: Lab) -> None:
    denied = lab.post("/mutate/kyverno", review([f"{lab.down}/fail/app:v1"], name="down"))
    assert denied["allowed"] is False
    assert "down-fail:\n  down-fail: " in denied["status"]["message"]
    admitted = lab.post("/mutate/kyverno", review([f"{lab.down}/ignore/app:v1"]))
    assert admitted["allowed"] is True
    # Kyverno's warning for a rule that errored (webhooks/utils/warning.go: "policy P.R: message")
    assert any(w.startswith("policy down-ignore.down-ignore: failed to verify image ") for w in admitted["warnings"])


def test_audit_results_become_policy_reports(lab: Lab) -> None:
    image = f"{lab.host}/audit/unsigned:v1"
    # Kyverno verifies (and reports) in its mutating webhook
    response = lab.post("/mutate/kyverno", review([image], name="audited", uid="uid-audit"))
    assert response["allowed"] is True
    reports = lab.http.get("/reports", params={"namespace": "default"}).json()
    assert reports["kind"] == "PolicyReportList"
    report = next(r for r in reports["items"] if r["metadata"]["name"] == "uid-audit")
    assert report["apiVersion"] == "wgpolicyk8s.io/v1alpha2" and report["summary"]["fail"] == 1
    (result,) = report["results"]
    assert (result["policy"], result["rule"], result["result"]) == ("audit-image", "audit-image", "fail")
    assert "no signatures found" in result["message"]
    assert result["resources"][0]["name"] == "audited"


def test_policy_changes_apply_at_once_and_bad_files_are_reported(lab: Lab) -> None:
    broken = lab.policies / "zz-broken.yaml"
    broken.write_text("apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata: {name: b}\nspec: {bogus: 1}\n")
    try:
        health = lab.http.get("/healthz").json()
        assert health["status"] == "degraded"
        assert 'unknown field "spec.bogus"' in health["errors"]["zz-broken.yaml"]
        assert "ClusterPolicy/check-image" in health["policies"]
        # the other policies still decide
        assert lab.post("/mutate/kyverno", review([f"{lab.host}/webhook/unsigned:v1"]))["allowed"] is False
    finally:
        broken.unlink()
    assert lab.http.get("/healthz").json()["status"] == "ok"
    removed = (lab.policies / "kyverno.yaml").read_text()
    (lab.policies / "kyverno.yaml").unlink()
    try:
        assert lab.post("/mutate/kyverno", review([f"{lab.host}/webhook/unsigned:v1"]))["allowed"] is True
    finally:
        (lab.policies / "kyverno.yaml").write_text(removed)


def test_ca_chain_verifies_with_openssl_and_names_loopback(lab: Lab) -> None:
    tls = lab.handle.tls
    check = subprocess.run(["openssl", "verify", "-CAfile", str(tls.ca_cert), str(tls.cert)],
                           capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip().endswith(": OK"), check.stdout + check.stderr
    san = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(tls.cert)],
                         capture_output=True, text=True, check=True).stdout
    assert "DNS:localhost" in san and "IP Address:127.0.0.1" in san and "DNS:labkit-admission.labkit.svc" in san
    assert tls.ca_key.stat().st_mode & 0o777 == 0o600 and tls.key.stat().st_mode & 0o777 == 0o600
    # a client without the CA refuses the server
    with pytest.raises(httpx.ConnectError):
        httpx.get(lab.handle.url + "/healthz", verify=True)


def test_reviews_stuck_on_a_slow_registry_end_by_their_deadline_and_hold_no_one_up(
    labkit_registry, tmp_path: Path
) -> None:
    """Ten reviews of images on a registry that sends a byte a second: each ends a moment
    (``GRACE``) after the review's deadline, when the API server has given up and applied its
    failurePolicy, as with a real engine; a caller still waiting gets the engine's registry
    error (a Fail policy denies). A signed pod on a healthy registry is answered at once
    meanwhile. Before, every worker waited on the trickle (no read ever timed out) and the
    healthy review queued behind them."""
    with hostile_registry(trickle_manifest) as slow:
        lab = Lab(tmp_path, labkit_registry.host)
        try:
            (lab.policies / "slow.yaml").write_text(_kyverno("slow-registry", f"{slow}/slow/*", lab.pem))
            with ThreadPoolExecutor(10) as pool:
                stuck = [pool.submit(lab.post, "/mutate/kyverno?timeout=10s", review([f"{slow}/slow/app:v{i}"]))
                         for i in range(10)]
                time.sleep(1)  # all ten are waiting on the registry by now
                start = time.monotonic()
                healthy = lab.post("/mutate/kyverno?timeout=10s", review([f"{lab.host}/webhook/signed:v1"]))
                assert healthy["allowed"] is True
                assert time.monotonic() - start < 5
                answers = [future.result(timeout=30) for future in stuck]
            # The API server's own ?timeout= is the review's deadline: the registry request ends
            # GRACE after it (a caller that waits gets the registry error, not an HTTP 500).
            answers.append(lab.post("/mutate/kyverno?timeout=2s", review([f"{slow}/slow/app:short"])))
            for answer in answers:
                assert answer["allowed"] is False
                assert "timed out" in answer["status"]["message"]
        finally:
            lab.http.close()
            lab.handle.stop()
