"""The seed scenario both lab backends run, checked against tests/scenario_expectations.yaml."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit import keys
from labkit.errors import AuthenticationError
from labkit.lab import AdmissionResult, Lab
from labkit.lab.names import kind_slash_name
from labkit.oci.client import RegistryClient
from labkit.oci.model import OCI_CONFIG, OCI_LAYER, Descriptor, Image, Manifest, sha256_digest
from labkit.oci.reference import Reference
from labkit.signing.sign import sign_image

EXPECTATIONS = Path(__file__).parent.parent / "scenario_expectations.yaml"
IMAGES = ("kyverno/signed", "kyverno/unsigned", "ivp/signed", "ivp/unsigned", "pc/signed", "pc/unsigned", "other/app")
SIGNED = ("kyverno/signed", "ivp/signed", "pc/signed")


@dataclass(frozen=True)
class Case:
    object: str
    namespace: str
    image: str
    admitted: bool
    message: str
    mutated_image: str | None = None


# The lab signs with --tlog-upload=false and has no Rekor: without these Kyverno wants a
# transparency-log entry and denies (shared/reference/native-engines.md, "Verified run").
OFFLINE = {"rekor": {"ignoreTlog": True}, "ctlog": {"ignoreSCT": True}}


def cases() -> list[Case]:
    return [Case(**c) for c in yaml.safe_load(EXPECTATIONS.read_text())["cases"]]


def one_layer_image(content: bytes) -> Image:
    """A one-layer image whose digest depends only on ``content``."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(content)]}}).encode()
    return Image(manifest=Manifest(config=Descriptor.of(OCI_CONFIG, config), layers=(Descriptor.of(OCI_LAYER, content),)),
                 config=config, layers=[content])


def prepare(lab: Lab, workdir: Path) -> dict[str, str]:
    """Push, sign, apply the policies and the namespace; return the table's substitutions."""
    keys.generate_key_pair(workdir / "lab", b"")
    pem = (workdir / "lab.pub").read_text().strip()
    private = keys.load_private_key(workdir / "lab.key", b"")
    push, pods = lab.registry.host, lab.registry.pod_host
    digests: dict[str, str] = {}
    with RegistryClient() as client:
        for repo in IMAGES:
            digests[repo] = client.push_image(Reference.parse(f"{push}/{repo}:v1"), one_layer_image(f"{repo}\n".encode()))
        for repo in SIGNED:
            sign_image(f"{push}/{repo}@{digests[repo]}", private, client=client)
    policy = {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "check-signed"},
              "spec": {"rules": [{"name": "check-signed", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                                  "verifyImages": [{"imageReferences": [f"{pods}/kyverno/*"], "failureAction": "Enforce",
                                                    "mutateDigest": True, "verifyDigest": True,
                                                    "attestors": [{"entries": [{"keys": OFFLINE | {"publicKeys": pem}}]}]}]}]}}
    cip = {"apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy",
           "metadata": {"name": "signed-by-lab-key"},
           "spec": {"images": [{"glob": f"{pods}/pc/**"}], "authorities": [{"key": {"data": pem}}]}}
    ivp = {"apiVersion": "policies.kyverno.io/v1beta1", "kind": "ImageValidatingPolicy", "metadata": {"name": "check-ivp"},
           "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                            "operations": ["CREATE"], "resources": ["pods"]}]},
                    "matchImageReferences": [{"glob": f"{pods}/ivp/*"}],
                    "attestors": [{"name": "lab", "cosign": {"key": {"data": pem + "\n"},
                                                             "ctlog": {"insecureIgnoreTlog": True}}}],
                    "validations": [{"expression": "images.containers.map(i, verifyImageSignatures(i, "
                                                   "[attestors.lab])).all(e, e > 0)", "message": "unsigned image"}]}}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "pc"}}
    results = lab.apply(yaml.safe_dump_all([policy, ivp, cip, namespace]))
    assert [r.message for r in results] == ["clusterpolicy.kyverno.io/check-signed created",
                                            "imagevalidatingpolicy.policies.kyverno.io/check-ivp created",
                                            "clusterimagepolicy.policy.sigstore.dev/signed-by-lab-key created",
                                            f"namespace/{lab.namespace('pc')} created"], results
    lab.label_namespace("pc", {"policy.sigstore.dev/include": "true"})
    return {"registry": pods, "kyverno_signed": digests["kyverno/signed"], "ivp_signed": digests["ivp/signed"],
            "pc_signed": digests["pc/signed"]}


def pod(case: Case, subs: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": case.object, "namespace": case.namespace},
            "spec": {"containers": [{"name": "app", "image": fill(case.image, subs)}]}}


def fill(text: str, subs: dict[str, str], *, escape: bool = False) -> str:
    for key, value in subs.items():
        text = text.replace("{" + key + "}", re.escape(value) if escape else value)
    return text


def check(result: AdmissionResult, case: Case, subs: dict[str, str]) -> None:
    assert result.admitted is case.admitted, result.message
    assert re.fullmatch(fill(case.message, subs, escape=True), result.message, re.DOTALL), result.message
    if case.mutated_image is not None:
        assert result.images == (fill(case.mutated_image, subs),)


def denial_from_file(the_lab: Lab, subs: dict[str, str], path: Path) -> AdmissionResult:
    """``lab.apply`` of a file holding the unsigned pod in policy-controller's namespace: kubectl
    names the file, the denial names policy-controller and its webhook."""
    case = next(c for c in cases() if c.object == "pc-unsigned")
    path.write_text(yaml.safe_dump({**pod(case, subs), "metadata": {"name": "from-file", "namespace": "pc"}}))
    [result] = the_lab.apply(path)
    assert result.controller == "policy-controller" and result.denied_by == "policy.sigstore.dev"
    assert result.message.startswith(f'Error from server (BadRequest): error when creating "{path}": '
                                     'admission webhook "policy.sigstore.dev" denied the request: ')
    return result


POLICY_TO_DELETE = {"apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy",
                    "metadata": {"name": "to-delete"},
                    "spec": {"images": [{"glob": "example.invalid/**"}], "authorities": [{"static": {"action": "fail"}}]}}


def list_and_delete_policy(the_lab: Lab, policy: dict[str, Any]) -> None:
    """``kubectl get … -o name`` lists an applied policy; the listed object is what ``delete``
    takes (notebooks 06-07 clean up this way), with kubectl's ``deleted`` line."""
    the_lab.apply(policy)
    [listed] = [p for p in the_lab.policies() if p["metadata"]["name"] == policy["metadata"]["name"]]
    assert kind_slash_name(listed) == kind_slash_name(policy)
    assert listed["spec"]["images"] == policy["spec"]["images"]
    resource, name = kind_slash_name(policy).split("/")
    assert [r.message for r in the_lab.delete(listed)] == [f'{resource} "{name}" deleted']
    assert name not in [p["metadata"]["name"] for p in the_lab.policies()]


@contextlib.contextmanager
def installed(the_lab: Lab, policy: dict[str, Any]) -> Iterator[None]:
    """``policy`` applied for the block, deleted after it: the labs are shared by the tests."""
    the_lab.apply(policy)
    try:
        yield
    finally:
        the_lab.delete(policy)


def private_registry_round_trip(the_lab: Lab, tmp_path: Path) -> None:
    """The private registry refuses anonymous pulls; a Kyverno rule naming the pull Secret
    verifies once learners create it, from ``lab.private_registry.pull_secret()``, where Kyverno
    reads Secrets: its own namespace (one in ``default`` it cannot see, so the pull stays anonymous)."""
    private = the_lab.private_registry
    assert private.password not in repr(private)
    with RegistryClient() as anonymous, pytest.raises(AuthenticationError):
        anonymous.list_tags(f"{private.host}/app")
    keys.generate_key_pair(tmp_path / "p", b"")
    pem = (tmp_path / "p.pub").read_text().strip()
    with RegistryClient(credentials=private.credentials()) as owner:
        digest = owner.push_image(f"{private.host}/private/app:v1", one_layer_image(b"private\n"))
        sign_image(f"{private.host}/private/app@{digest}", keys.load_private_key(tmp_path / "p.key", b""), client=owner)
    policy = {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "private"},
              "spec": {"rules": [{"name": "private", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                                  "verifyImages": [{"imageReferences": [f"{private.pod_host}/private/*"],
                                                    "imageRegistryCredentials": {"secrets": ["regcred"]},
                                                    "failureAction": "Enforce",
                                                    "attestors": [{"entries": [{"keys": OFFLINE | {"publicKeys": pem}}]}]}]}]}}
    with installed(the_lab, policy):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "private-app"},
               "spec": {"containers": [{"name": "c", "image": f"{private.pod_host}/private/app:v1"}]}}
        without = the_lab.create(pod)
        assert not without.admitted and without.denied_by == "mutate.kyverno.svc-fail", without.message
        [stored] = the_lab.apply(private.pull_secret("regcred", "default"))
        assert stored.message == "secret/regcred created"
        unseen = the_lab.create(pod)
        assert not unseen.admitted and "UNAUTHORIZED" in unseen.message, unseen.message
        [stored] = the_lab.apply(private.pull_secret("regcred", "kyverno"))
        assert stored.message == "secret/regcred created"
        admitted = the_lab.create(pod)
        assert admitted.admitted, admitted.message
        assert admitted.images == (f"{private.pod_host}/private/app:v1@{digest}",)


def private_registry_ivp_round_trip(the_lab: Lab, tmp_path: Path) -> None:
    """An ImageValidatingPolicy pulls with ``credentials.secrets``, looked up in the Kyverno
    namespace (1.17.1+, PR #15136), never with the pod's ``imagePullSecrets`` (#17080): a Secret
    in the pod's namespace leaves it anonymous, and the registry says UNAUTHORIZED."""
    private = the_lab.private_registry
    keys.generate_key_pair(tmp_path / "ivp", b"")
    pem = (tmp_path / "ivp.pub").read_text().strip()
    with RegistryClient(credentials=private.credentials()) as owner:
        digest = owner.push_image(f"{private.host}/private/ivp-app:v1", one_layer_image(b"private ivp\n"))
        sign_image(f"{private.host}/private/ivp-app@{digest}", keys.load_private_key(tmp_path / "ivp.key", b""),
                   client=owner)
    policy = {"apiVersion": "policies.kyverno.io/v1", "kind": "ImageValidatingPolicy", "metadata": {"name": "private-ivp"},
              "spec": {"validationActions": ["Deny"],
                       "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                               "operations": ["CREATE"], "resources": ["pods"]}]},
                       "matchImageReferences": [{"glob": f"{private.pod_host}/private/ivp-*"}],
                       "credentials": {"secrets": ["ivpcred"]},
                       "attestors": [{"name": "lab", "cosign": {"key": {"data": pem},
                                                                 "ctlog": {"insecureIgnoreTlog": True,
                                                                           "insecureIgnoreSCT": True}}}],
                       "validations": [{"expression": "images.containers.map(image, verifyImageSignatures("
                                                      "image, [attestors.lab])).all(e, e > 0)",
                                        "message": "failed to verify image with cosign key"}]}}
    with installed(the_lab, policy):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "private-ivp-app"},
               "spec": {"imagePullSecrets": [{"name": "ivpcred"}],
                        "containers": [{"name": "c", "image": f"{private.pod_host}/private/ivp-app@{digest}"}]}}
        the_lab.apply(private.pull_secret("ivpcred", "default"))  # the pod's namespace: not where IVP looks
        anonymous = the_lab.create(pod)
        assert not anonymous.admitted and "UNAUTHORIZED" in anonymous.message.upper(), anonymous.message
        the_lab.label_namespace("kyverno", {})
        [stored] = the_lab.apply(private.pull_secret("ivpcred", "kyverno"))
        assert stored.message == "secret/ivpcred created"
        admitted = the_lab.create(pod)
        assert admitted.admitted, admitted.message
