"""The existing backend (a trainer's shared cluster), with the native lab's real API server,
Kyverno and policy-controller as that cluster and its registry as the room's.

Oracles: the real engines' webhooks decide every pod here, and the real API server says what
exists; labkit's own view (``policies()``, ``status()``) is checked against ``kubectl`` run
directly on the cluster, as the trainer would.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit import keys
from labkit.errors import LabError, UsageError
from labkit.lab import Lab
from labkit.lab.base import pod
from labkit.lab.kubectl import KubectlLab
from labkit.oci.client import RegistryClient
from labkit.signing.sign import sign_image
from tests.lab import scenario


@pytest.fixture(scope="module")
def cluster(native_lab: Lab) -> Iterator[KubectlLab]:
    """The native lab as the trainer's cluster: what it holds before and after is the trainer's."""
    assert isinstance(native_lab, KubectlLab)
    native_lab.reset()
    try:
        yield native_lab
    finally:
        native_lab.reset()


def join(cluster: KubectlLab, home: Path, learner: str) -> Lab:
    return Lab.start("existing", home, kubeconfig=cluster.kubeconfig, registry=cluster.registry.host, learner=learner)


@pytest.fixture(scope="module")
def room(cluster: KubectlLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Lab]]:
    alice = join(cluster, tmp_path_factory.mktemp("alice"), "alice")
    bob = join(cluster, tmp_path_factory.mktemp("bob"), "bob")
    try:
        yield alice, bob
    finally:
        alice.stop()
        bob.stop()


def on_cluster(cluster: KubectlLab, *args: str) -> Any:
    """``kubectl get … -o json`` as the trainer runs it."""
    return json.loads(cluster.must("get", *args, "-o", "json"))


def signed_and_unsigned(lab: Lab, workdir: Path, name: str) -> tuple[str, str, str]:
    """A key (its public PEM) and two images under the learner's prefix, the first signed with it."""
    keys.generate_key_pair(workdir / name, b"")
    private = keys.load_private_key(workdir / f"{name}.key", b"")
    refs = []
    with RegistryClient() as client:
        for which in ("signed", "unsigned"):
            digest = client.push_image(f"{lab.registry.host}/scope/{which}:v1",
                                       scenario.one_layer_image(f"{lab.registry.host} {which}\n".encode()))
            refs.append(f"{lab.registry.pod_host}/scope/{which}@{digest}")
        sign_image(refs[0].replace(lab.registry.pod_host, lab.registry.host), private, client=client)
    return (workdir / f"{name}.pub").read_text().strip(), refs[0], refs[1]


def test_a_learner_gets_namespaces_and_a_repository_prefix_of_their_own(room: tuple[Lab, Lab],
                                                                       cluster: KubectlLab) -> None:
    alice, bob = room
    assert alice.registry.host == f"{cluster.registry.host}/alice" and bob.registry.host.endswith("/bob")
    assert (alice.namespace("default"), alice.namespace("secure")) == ("labkit-alice", "labkit-alice-secure")
    listed = on_cluster(cluster, "namespace", "labkit-alice")
    assert listed["metadata"]["labels"]["labkit.dev/learner"] == "alice"
    assert alice.env()["LABKIT_BUILD_PULL_BASE"] == "1"  # the cluster runs pods: builds use the pinned FROM
    status = alice.status()
    assert status["backend"] == "existing" and status["health"] == {"kyverno": "ok", "policy-controller": "ok"}


def test_the_seed_scenario_decides_the_same_in_a_learners_share(room: tuple[Lab, Lab], tmp_path: Path) -> None:
    """tests/scenario_expectations.yaml, the table every backend is held to, with the learner's
    namespaces in kubectl's messages (it names the cluster's objects as they are)."""
    alice = room[0]
    policies = scenario.prepare(alice, tmp_path)
    try:
        for case in scenario.cases():
            namespace = alice.namespace(case.namespace)
            message = case.message.replace(f"Pod/{case.namespace}/", f"Pod/{namespace}/")
            here = dataclasses.replace(case, message=message)
            result = alice.create(scenario.pod(here, policies))
            scenario.check(result, here, policies)
            assert result.namespace == namespace
    finally:
        alice.reset()


def test_one_learners_cluster_policy_never_decides_anothers_pods(room: tuple[Lab, Lab], cluster: KubectlLab,
                                                                 tmp_path: Path) -> None:
    """A ClusterPolicy and an ImageValidatingPolicy reaching every image: Alice's unsigned pod is
    denied by each, Bob's is admitted (Kyverno never applies them outside Alice's namespaces).
    The stored ClusterPolicy keeps its own exclusion beside labkit's."""
    alice, bob = room
    pem, _signed, unsigned = signed_and_unsigned(alice, tmp_path, "alice")
    _, _, bobs_unsigned = signed_and_unsigned(bob, tmp_path, "bob")
    everything = {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "alice-all"},
                  "spec": {"rules": [{"name": "all", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                                      # the legacy form: labkit's own exclusion must join it, not replace it
                                      "exclude": {"resources": {"namespaces": ["kube-system"]}},
                                      "verifyImages": [{"imageReferences": ["*"], "failureAction": "Enforce",
                                                        "attestors": [{"entries": [{"keys": scenario.OFFLINE
                                                                                    | {"publicKeys": pem}}]}]}]}]}}
    ivp = {"apiVersion": "policies.kyverno.io/v1", "kind": "ImageValidatingPolicy", "metadata": {"name": "alice-ivp"},
           "spec": {"validationActions": ["Deny"],
                    "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                            "operations": ["CREATE"], "resources": ["pods"]}]},
                    "matchImageReferences": [{"glob": "*"}],
                    "attestors": [{"name": "a", "cosign": {"key": {"data": pem}, "ctlog": {
                        "insecureIgnoreTlog": True, "insecureIgnoreSCT": True}}}],
                    "validations": [{"expression": "images.containers.map(i, verifyImageSignatures(i, "
                                                   "[attestors.a])).all(e, e > 0)", "message": "not alice's"}]}}
    for policy, webhook in ((everything, "mutate.kyverno.svc-fail"), (ivp, "ivpol.validate.kyverno.svc-fail")):
        with scenario.installed(alice, policy):
            denied = alice.create(pod("mine", unsigned))
            assert not denied.admitted and denied.denied_by == webhook, denied.message
            admitted = bob.create(pod(f"theirs-{policy['metadata']['name']}", bobs_unsigned))
            assert admitted.admitted, admitted.message
            if policy is everything:
                [rule] = on_cluster(cluster, "clusterpolicy.kyverno.io/alice-all")["spec"]["rules"]
                assert {"resources": {"namespaces": ["kube-system"]}} in rule["exclude"]["any"]
    stored = on_cluster(cluster, "pods", "-n", "labkit-bob")["items"]
    assert {p["metadata"]["name"] for p in stored} >= {"theirs-alice-all", "theirs-alice-ivp"}


def test_a_name_someone_else_holds_is_refused_not_overwritten(room: tuple[Lab, Lab], cluster: KubectlLab) -> None:
    alice, bob = room
    policy = dict(scenario.POLICY_TO_DELETE, metadata={"name": "shared-name"})
    with scenario.installed(alice, policy):
        before = on_cluster(cluster, "clusterimagepolicy.policy.sigstore.dev/shared-name")
        with pytest.raises(LabError, match="already exists on the shared cluster and is learner alice's") as err:
            bob.apply(dict(policy, spec={"images": [{"glob": "**"}], "authorities": [{"static": {"action": "pass"}}]}))
        assert "bob-shared-name" in (err.value.hint or "")
        after = on_cluster(cluster, "clusterimagepolicy.policy.sigstore.dev/shared-name")
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert [p["metadata"]["name"] for p in bob.policies()] == []


def test_a_cluster_image_policy_says_it_cannot_be_scoped(room: tuple[Lab, Lab]) -> None:
    alice = room[0]
    broad = dict(scenario.POLICY_TO_DELETE, metadata={"name": "alice-broad"},
                 spec={"images": [{"glob": "**"}], "authorities": [{"static": {"action": "pass"}}]})
    [result] = alice.apply(broad)
    try:
        assert result.admitted, result.message
        [warning] = [w for w in result.warnings if "cannot be limited to your namespaces" in w]
        assert "** reaches beyond your images" in warning
    finally:
        alice.delete(broad)


def test_the_engines_namespaces_are_not_a_learners(room: tuple[Lab, Lab]) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "regcred", "namespace": "kyverno"}}
    with pytest.raises(LabError, match="belongs to the shared cluster's engines"):
        room[0].apply(secret)


def test_reset_and_down_remove_only_what_the_learner_made(cluster: KubectlLab, tmp_path: Path) -> None:
    """The trainer's namespace, another learner's policy, namespace and signatures all survive
    one learner's reset and `lab down`; that learner's own are gone."""
    carol, dave = join(cluster, tmp_path / "carol", "carol"), join(cluster, tmp_path / "dave", "dave")
    cluster.label_namespace("trainer-space", {"team": "trainers"})
    try:
        for lab in (carol, dave):
            signed_and_unsigned(lab, tmp_path, lab.namespace("default"))
            lab.apply(dict(scenario.POLICY_TO_DELETE, metadata={"name": f"{lab.namespace('default')}-pc"}))
            lab.label_namespace("secure", {"policy.sigstore.dev/include": "true"})
        carol.reset()
        names = {n["metadata"]["name"] for n in on_cluster(cluster, "namespaces")["items"]}
        assert {"trainer-space", "labkit-carol", "labkit-dave", "labkit-dave-secure"} <= names
        assert "labkit-carol-secure" not in names
        stored = on_cluster(cluster, "clusterimagepolicies.policy.sigstore.dev")["items"]
        policies = {p["metadata"]["name"] for p in stored}
        assert policies == {"labkit-dave-pc"}
        with RegistryClient() as client:
            assert [t for t in client.list_tags(f"{carol.registry.host}/scope/signed") if t.endswith(".sig")] == []
            assert [t for t in client.list_tags(f"{dave.registry.host}/scope/signed") if t.endswith(".sig")] != []
        carol.stop()
        names = {n["metadata"]["name"] for n in on_cluster(cluster, "namespaces")["items"]}
        assert "labkit-carol" not in names and {"trainer-space", "labkit-dave"} <= names
    finally:
        dave.stop()


def test_a_cluster_that_does_not_answer_is_a_clear_error(cluster: KubectlLab, tmp_path: Path) -> None:
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"  # the discard port: nothing listens
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    with pytest.raises(LabError, match="does not answer") as err:
        Lab.start("existing", tmp_path / "home", kubeconfig=tmp_path / "kubeconfig",
                  registry=cluster.registry.host, learner="erin")
    assert "kubeconfig" in (err.value.hint or "")
    assert not (tmp_path / "home" / "lab.json").exists()


def test_learner_names_must_fit_a_namespace() -> None:
    from labkit.lab.existing import learner_id

    assert learner_id("Ada Lovelace") == "ada-lovelace"
    with pytest.raises(UsageError, match="cannot name a learner"):
        learner_id("x" * 21)


def test_labkit_lab_up_joins_from_the_command_line(cluster: KubectlLab, tmp_path: Path) -> None:
    env = {**os.environ, "LABKIT_HOME": str(tmp_path / "home")}
    run = [sys.executable, "-m", "labkit", "lab"]
    up = subprocess.run([*run, "up", "--backend", "existing", "--kubeconfig", str(cluster.kubeconfig),
                         "--registry", cluster.registry.host, "--learner", "frank", "--no-pull-base"],
                        env=env, capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        assert "backend:  existing\n" in up.stdout
        assert re.search(rf"registry: {re.escape(cluster.registry.host)}/frank\n", up.stdout)
        shell = subprocess.run([*run, "env"], env=env, capture_output=True, text=True, timeout=60)
        assert shell.returncode == 0 and "LABKIT_BUILD_PULL_BASE" not in shell.stdout  # --no-pull-base
    finally:
        down = subprocess.run([*run, "down"], env=env, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr
    assert "labkit-frank" not in cluster.must("get", "namespaces", "-o", "name")
    wrong = subprocess.run([*run, "up", "--registry", "127.0.0.1:9"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert wrong.returncode != 0 and "--registry are for --backend existing" in wrong.stderr
