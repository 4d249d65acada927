"""Pull-secret lookups of each engine, and pulls through labkit's registry with basic auth.

Oracles: where each engine looks Secrets up is read from upstream source (Kyverno
``pkg/engine/factories/registryclientfactory.go`` at v1.17.0 and v1.19.0, #15120/#15136 for the
ImageValidatingPolicy bug; policy-controller ``pkg/webhook/validator.go`` v0.13.1); the
``.dockerconfigjson`` layout is what ``kubectl create secret docker-registry`` writes. The
registry test runs a real labkit registry that refuses anonymous pulls.
"""

from __future__ import annotations

import base64
import json
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from labkit.errors import PolicyError
from labkit.oci.auth import Credentials
from labkit.policy.credentials import (
    MemorySecretStore,
    SecretsFile,
    dockerconfigjson_secret,
    emulated_kyverno_version,
    kyverno_ivp_keychain,
    kyverno_keychain,
    parse_secrets,
    policy_controller_keychain,
    secrets_document,
)

HOST = "127.0.0.1:5000"
REGCRED_DEFAULT = dockerconfigjson_secret("default", "regcred", HOST, "alice", "s3cret")
REGCRED_KYVERNO = dockerconfigjson_secret("kyverno", "regcred", HOST, "kyv", "pw")
STORE = MemorySecretStore.of(REGCRED_DEFAULT, REGCRED_KYVERNO)


def test_dockerconfigjson_entry_matches_registry_host() -> None:
    assert REGCRED_DEFAULT.registry_credentials(HOST) == Credentials("alice", "s3cret")
    assert REGCRED_DEFAULT.registry_credentials("ghcr.io") is None
    hub = dockerconfigjson_secret("default", "hub", "https://index.docker.io/v1/", "bob", "pw")
    assert hub.registry_credentials("index.docker.io") == Credentials("bob", "pw")


def test_kyverno_reads_secret_names_in_its_own_namespace() -> None:
    # the trap: the Secret sits next to the workload, Kyverno looks in "kyverno"
    only_default = MemorySecretStore.of(REGCRED_DEFAULT)
    chain = kyverno_keychain(only_default, ["regcred"], resource_namespace="default")
    assert chain.credentials(f"{HOST}/app:v1") is None and chain.missing == ("kyverno/regcred",)
    assert kyverno_keychain(STORE, ["regcred"], resource_namespace="default").credentials(
        f"{HOST}/app:v1") == Credentials("kyv", "pw")


def test_kyverno_namespace_qualified_names_only_from_1_18() -> None:
    qualified = ["default/regcred"]
    old = kyverno_keychain(STORE, qualified, resource_namespace="default", version=(1, 17, 1))
    assert old.credentials(f"{HOST}/app:v1") is None and old.missing == ("kyverno/default/regcred",)
    # 1.18+ parses the name, but reads Secrets only where it runs informers: its namespace and
    # those its --imagePullSecrets flag names (cmd/internal/registry.go). The native lab's real
    # Kyverno 1.19.1 answers UNAUTHORIZED for default/regcred, as this says.
    new = kyverno_keychain(STORE, qualified, resource_namespace="default")
    assert new.credentials(f"{HOST}/app:v1") is None and new.missing == ("default/regcred",)
    flagged = kyverno_keychain(STORE, qualified, resource_namespace="default", pull_secret_namespaces=["default"])
    assert flagged.credentials(f"{HOST}/app:v1") == Credentials("alice", "s3cret")
    own = kyverno_keychain(STORE, ["kyverno/regcred"], resource_namespace="default")
    assert own.credentials(f"{HOST}/app:v1") == Credentials("kyv", "pw")


def test_kyverno_1_19_adds_the_pods_image_pull_secrets_in_its_namespace() -> None:
    # ...which it can read only when its --imagePullSecrets flag names that namespace
    chain = kyverno_keychain(STORE, [], resource_namespace="default", image_pull_secrets=["regcred"])
    assert chain.credentials(f"{HOST}/app:v1") is None
    chain = kyverno_keychain(STORE, [], resource_namespace="default", image_pull_secrets=["regcred"],
                             pull_secret_namespaces=["default"])
    assert chain.credentials(f"{HOST}/app:v1") == Credentials("alice", "s3cret")
    assert kyverno_keychain(STORE, [], resource_namespace="default", image_pull_secrets=["regcred"],
                            version=(1, 17, 0)).secrets == ()


@pytest.mark.parametrize(("version", "found"), [((1, 14, 0), False), ((1, 16, 4), False),
                                                ((1, 17, 0), False), ((1, 17, 1), True)])
def test_image_validating_policy_secret_bug_until_1_17_1(version: tuple[int, ...], found: bool) -> None:
    chain = kyverno_ivp_keychain(STORE, ["regcred"], version=version)
    assert (chain.credentials(f"{HOST}/app:v1") is not None) is found


def test_the_emulated_version_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``LABKIT_KYVERNO_VERSION`` is how the embedded lab's webhook is told which Kyverno to follow."""
    monkeypatch.delenv("LABKIT_KYVERNO_VERSION", raising=False)
    assert emulated_kyverno_version() == (1, 19, 1)
    assert kyverno_ivp_keychain(STORE, ["regcred"]).credentials(f"{HOST}/app:v1") is not None
    monkeypatch.setenv("LABKIT_KYVERNO_VERSION", "v1.17.0")
    assert emulated_kyverno_version() == (1, 17, 0)
    chain = kyverno_ivp_keychain(STORE, ["regcred"])
    assert chain.credentials(f"{HOST}/app:v1") is None and chain.missing == ("(no namespace)/regcred",)
    monkeypatch.setenv("LABKIT_KYVERNO_VERSION", "latest")
    with pytest.raises(PolicyError, match="LABKIT_KYVERNO_VERSION"):
        emulated_kyverno_version()


def test_policy_controller_reads_the_workload_namespace() -> None:
    chain = policy_controller_keychain(STORE, ["regcred"], namespace="default")
    assert chain.credentials(f"{HOST}/app:v1") == Credentials("alice", "s3cret")
    assert policy_controller_keychain(STORE, ["regcred"], namespace="team-a").secrets == ()


def test_state_file_round_trip_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    doc = secrets_document([REGCRED_DEFAULT])
    raw = json.loads(base64.b64decode(doc["default/regcred"]["data"][".dockerconfigjson"]))
    assert raw["auths"][HOST]["auth"] == base64.b64encode(b"alice:s3cret").decode()
    store = SecretsFile(path)
    assert store.get("default", "regcred") is None  # no file yet: no Secrets
    path.write_text(json.dumps(doc))
    assert store.get("default", "regcred") == REGCRED_DEFAULT
    path.write_text("{not json")
    assert store.get("default", "regcred") is None and "Secrets not read" in store.error
    assert "s3cret" not in store.error
    assert parse_secrets(doc) == {("default", "regcred"): REGCRED_DEFAULT}


def test_private_registry_needs_the_secret_kyverno_reads(tmp_path: Path) -> None:
    """labkit's registry with basic auth: a Secret in ``kyverno`` admits (the bare name), one in
    ``default`` (``default/regcred``) is out of Kyverno's sight: the pull goes anonymous and fails."""
    from labkit.oci.client import RegistryClient
    from labkit.oci.model import OCI_CONFIG, OCI_LAYER, Descriptor, Image, Manifest, sha256_digest
    from labkit.policy.credentials import RegistryAccess
    from labkit.policy.phases import evaluate
    from labkit.policy.load import load_policies
    from labkit.registry import serve
    from labkit.signing.sign import sign_image
    from labkit import keys

    handle = serve(tmp_path / "registry", port=0, username="alice", password="s3cret")
    try:
        host = f"127.0.0.1:{handle.port}"
        secret = dockerconfigjson_secret("kyverno", "regcred", host, "alice", "s3cret")
        elsewhere = dockerconfigjson_secret("default", "regcred", host, "alice", "s3cret")
        keys.generate_key_pair(tmp_path / "k", b"")
        private = keys.load_private_key(tmp_path / "k.key", b"")
        pem = (tmp_path / "k.pub").read_text()
        config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha256_digest(b"x")]}}).encode()
        image = Image(manifest=Manifest(config=Descriptor.of(OCI_CONFIG, config),
                                        layers=(Descriptor.of(OCI_LAYER, b"x"),)), config=config, layers=[b"x"])
        with RegistryClient(credentials=Credentials("alice", "s3cret")) as owner:
            digest = owner.push_image(f"{host}/private/app:v1", image)
            sign_image(f"{host}/private/app@{digest}", private, client=owner)

        pem_yaml = json.dumps(pem.strip())  # a JSON string is a YAML double-quoted scalar

        def policy(secret_ref: str) -> str:
            return textwrap.dedent(f"""\
                apiVersion: kyverno.io/v1
                kind: ClusterPolicy
                metadata: {{name: private}}
                spec:
                  rules:
                    - name: private
                      match: {{any: [{{resources: {{kinds: [Pod]}}}}]}}
                      verifyImages:
                        - imageReferences: ["{host}/private/*"]
                          failureAction: Enforce
                          imageRegistryCredentials: {{secrets: ["{secret_ref}"]}}
                          attestors: [{{entries: [{{keys: {{publicKeys: {pem_yaml},
                            rekor: {{ignoreTlog: true}}, ctlog: {{ignoreSCT: true}}}}}}]}}]
                """)

        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
               "spec": {"containers": [{"name": "c", "image": f"{host}/private/app:v1"}]}}
        with RegistryClient() as anonymous:
            access = RegistryAccess(anonymous)
            try:
                store = MemorySecretStore.of(secret, elsewhere)
                ok = evaluate(load_policies(policy("regcred")), pod, verifier=access,
                              resolver=access.resolve, secrets=store)
                assert ok.allowed, ok.message
                assert ok.patches[-1]["value"] == f"{host}/private/app:v1@{digest}"
                denied = evaluate(load_policies(policy("default/regcred")), pod, verifier=access,
                                  resolver=access.resolve, secrets=store)
                assert not denied.allowed and denied.webhook == "mutate.kyverno.svc-fail"
                assert "failed to verify image" in denied.message
                assert "pull secrets: none; not found: default/regcred" in denied.trace[0].attestors
                assert "s3cret" not in denied.message
            finally:
                access.close()
    finally:
        handle.stop()
