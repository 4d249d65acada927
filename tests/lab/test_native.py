"""The seed scenario on the native lab: the real kube-apiserver, Kyverno and policy-controller decide.

Oracles: the real engines' webhooks (every decision and message here is theirs, relayed by the
real kube-apiserver and printed by the real kubectl), tests/scenario_expectations.yaml (the same
table the embedded lab is held to), and the kernel (``/proc``) for processes and sockets.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import keys
from labkit.lab import Lab
from labkit.lab.kubectl import KubectlLab
from labkit.lab.sockets import connected_to
from labkit.lab.state import process_start_time
from labkit.oci.client import RegistryClient
from labkit.signing.sign import sign_image
from tests.lab import scenario


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def lab(native_lab: Lab, keys_dir: Path) -> Iterator[tuple[Lab, dict[str, str]]]:
    native_lab.reset()
    try:
        yield native_lab, scenario.prepare(native_lab, keys_dir)
    finally:
        native_lab.reset()


@pytest.mark.parametrize("case", scenario.cases(), ids=lambda c: c.object)
def test_scenario(lab: tuple[Lab, dict[str, str]], case: scenario.Case) -> None:
    the_lab, subs = lab
    scenario.check(the_lab.create(scenario.pod(case, subs)), case, subs)


def test_denial_names_the_controller_and_a_file(lab: tuple[Lab, dict[str, str]], tmp_path: Path) -> None:
    scenario.denial_from_file(*lab, tmp_path / "pod.yaml")


def test_policies_lists_what_delete_removes(lab: tuple[Lab, dict[str, str]]) -> None:
    scenario.list_and_delete_policy(lab[0], scenario.POLICY_TO_DELETE)


def test_private_registry_needs_the_pull_secret_where_kyverno_reads(lab: tuple[Lab, dict[str, str]],
                                                                    tmp_path: Path) -> None:
    scenario.private_registry_round_trip(lab[0], tmp_path)


def test_ivp_pulls_with_credentials_secrets_in_the_kyverno_namespace(lab: tuple[Lab, dict[str, str]],
                                                                      tmp_path: Path) -> None:
    scenario.private_registry_ivp_round_trip(lab[0], tmp_path)


def test_server_dry_run_keeps_nothing(lab: tuple[Lab, dict[str, str]]) -> None:
    the_lab, subs = lab
    case = next(c for c in scenario.cases() if c.object == "kyverno-signed")
    pod = {**scenario.pod(case, subs), "metadata": {"name": "dry", "namespace": "default"}}
    result = the_lab.create(pod, dry_run=True)
    assert result.admitted and result.message == "pod/dry created (server dry run)", result.message
    assert the_lab.create(pod).message == "pod/dry created"  # the dry run kept no pod of that name


def test_status_names_every_process_and_its_addresses(lab: tuple[Lab, dict[str, str]]) -> None:
    status = lab[0].status()
    assert status["backend"] == "native"
    assert set(status["processes"]) == {"registry", "private-registry", "etcd", "kube-apiserver",
                                        "kube-controller-manager", "kyverno", "kyverno-reports", "policy-controller"}
    assert all(p["alive"] for p in status["processes"].values()), status["processes"]
    assert status["health"]["kube-apiserver"] == "ok"
    for name in ("etcd", "kube-apiserver", "kyverno"):
        assert status["processes"][name]["listens"], name
        assert all(a.startswith("127.0.0.1:") for a in status["processes"][name]["listens"]), status["processes"][name]
    # knative's webhook can only listen on all interfaces: status says so
    pc = status["processes"]["policy-controller"]["listens"]
    assert any(a.startswith("*:") for a in pc) and set(status["beyond_loopback"]) >= {a for a in pc if a[0] == "*"}


def test_cli_status_from_another_process(lab: tuple[Lab, dict[str, str]]) -> None:
    out = subprocess.run([sys.executable, "-m", "labkit", "lab", "status"], capture_output=True, text=True,
                         env={**os.environ, "LABKIT_HOME": str(lab[0].home.root)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "backend:  native\n" in out.stdout and "health:   kube-apiserver: ok" in out.stdout and "health:   kyverno: ok" in out.stdout
    assert "process:  policy-controller (pid " in out.stdout and "note:     listening beyond loopback" in out.stdout


def test_nothing_leaves_loopback(lab: tuple[Lab, dict[str, str]], keys_dir: Path) -> None:
    """Real Kyverno reaches for the public TUF mirror when an attestor lacks ``ignoreTlog``: in
    the lab's namespace that reach fails on this machine (still a denial), and no lab process
    holds a connection to anything but loopback."""
    the_lab, subs = lab
    assert [line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]] == ["lo"]
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("192.0.2.1", 443)) != 0  # TEST-NET-1: unreachable from here by construction
    host = the_lab.registry.host
    with RegistryClient() as client:
        digest = client.push_image(f"{host}/tlog/app:v1", scenario.one_layer_image(b"tlog\n"))
        sign_image(f"{host}/tlog/app@{digest}", keys.load_private_key(keys_dir / "lab.key", b""), client=client)
    pem = (keys_dir / "lab.pub").read_text().strip()
    policy = {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "needs-tlog"},
              "spec": {"rules": [{"name": "needs-tlog", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                                  "verifyImages": [{"imageReferences": [f"{host}/tlog/*"], "failureAction": "Enforce",
                                                    "attestors": [{"entries": [{"keys": {"publicKeys": pem}}]}]}]}]}}
    [applied] = the_lab.apply(policy)
    assert applied.admitted, applied.message
    try:
        result = the_lab.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "needs-tlog"},
                                 "spec": {"containers": [{"name": "c", "image": f"{host}/tlog/app@{digest}"}]}})
        assert not result.admitted
        assert "failed to load Rekor public keys" in result.message, result.message
        assert "network is unreachable" in result.message, result.message
    finally:
        the_lab.delete(policy)
    for name, service in the_lab.state.services.items():
        peers = [a for a in connected_to(service.pid) if not a.startswith(("127.", "[::1]:", "[::ffff:127."))]
        assert not peers, f"{name} is connected beyond loopback: {peers}"


def test_up_twice_reuses_and_down_leaves_nothing_listening(native_lab: Lab, tmp_path: Path) -> None:
    """``labkit lab up --backend native`` in a namespace of its own (the session's lab holds
    policy-controller's fixed ports in this one): a second ``up`` returns the running lab, and
    ``down`` ends every process it started and leaves no socket listening."""
    home = tmp_path / "home"
    script = (f'export LABKIT_HOME="{home}"; set -e; '
              f'"{sys.executable}" -m labkit lab up --backend native > "{tmp_path}/up1"; '
              f'"{sys.executable}" -m labkit lab up --backend native > "{tmp_path}/up2"; '
              f'"{sys.executable}" -m labkit lab down; cat /proc/net/tcp /proc/net/tcp6 > "{tmp_path}/after"')
    netns_run = Path(__file__).resolve().parents[2] / "tools" / "netns-run"
    out = subprocess.run([str(netns_run), "sh", "-c", script], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    first, second = ((tmp_path / name).read_text() for name in ("up1", "up2"))
    pids = [int(line.split("(pid ")[1].split(")")[0]) for line in first.splitlines() if line.startswith("process:")]
    assert len(pids) == 8 and sorted(first.splitlines()) == sorted(second.splitlines())  # the running lab, reused
    assert not [pid for pid in pids if process_start_time(pid) is not None]  # gone (a zombie counts as gone)
    listening = [line for line in (tmp_path / "after").read_text().splitlines()[1:]
                 if len(line.split()) > 3 and line.split()[3] == "0A"]
    assert not listening, listening


def test_a_denied_pod_stays_denied_after_lab_down_and_up(native_lab: Lab, tmp_path: Path) -> None:
    """Issue 14 §2 on the real engines, in a namespace of its own (policy-controller's fixed ports):
    policies applied and unsigned pods denied, the lab stopped and started again; the registry has
    the same address, the policies are still stored, the same unsigned images are denied by the
    real webhooks and signed ones admitted (so the engines still reach the registry)."""
    netns_run = Path(__file__).resolve().parents[2] / "tools" / "netns-run"
    (tmp_path / "work").mkdir()
    out = subprocess.run([str(netns_run), sys.executable, "-m", "tests.lab.native_restart", str(tmp_path / "home"),
                          str(tmp_path / "work")], capture_output=True, text=True, timeout=900,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.splitlines()[-1])
    assert seen["registry_after"] == seen["registry_before"]
    assert seen["policies"] == ["check-ivp", "check-signed", "signed-by-lab-key"] and seen["stale"] == []
    assert not any(admitted for admitted, _ in seen["before"].values()), seen["before"]
    admitted = {name: result[0] for name, result in seen["after"].items()}
    assert admitted == {"kyverno-unsigned": False, "ivp-unsigned": False, "pc-unsigned": False,
                        "kyverno-signed": True, "pc-signed": True}, seen["after"]
    assert "denied the request" in seen["after"]["pc-unsigned"][1]


def test_env_gives_bash_kubectl_pointed_at_the_lab(lab: tuple[Lab, dict[str, str]], tmp_path: Path) -> None:
    """``eval "$(labkit lab env)"``: the real kubectl, under its plain name, talks to the lab's API server."""
    the_lab = lab[0]
    printed = subprocess.run([sys.executable, "-m", "labkit", "lab", "env"], capture_output=True, text=True,
                             env={**os.environ, "LABKIT_HOME": str(the_lab.home.root)}, timeout=120)
    assert printed.returncode == 0, printed.stderr
    assert "no API server" not in printed.stdout
    (tmp_path / "env.sh").write_text(printed.stdout)
    script = 'eval "$(cat "$1")"; set -e; kubectl version --client -o json; kubectl get namespace pc -o name'
    out = subprocess.run(["bash", "-c", script, "bash", str(tmp_path / "env.sh")], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert '"gitVersion": "v1.36.3"' in out.stdout and out.stdout.rstrip().endswith("namespace/pc")


def test_reset_leaves_no_namespace_credentials_or_compiled_policy_behind(native_lab: Lab) -> None:
    """After `lab reset` the namespaces are gone (not Terminating), the registry credentials
    learners gave Kyverno in its namespace are deleted, the engines' own Secrets stay, and
    policy-controller has dropped every compiled ClusterImagePolicy: the API server says so."""
    assert isinstance(native_lab, KubectlLab)
    native_lab.reset()  # the module's earlier tests leave their Secrets for their own reset
    native_lab.label_namespace("reset-me", {"policy.sigstore.dev/include": "true"})
    [secret] = native_lab.apply(native_lab.private_registry.pull_secret("ivpcred", "kyverno"))
    assert secret.message == "secret/ivpcred created"
    native_lab.apply(scenario.POLICY_TO_DELETE)
    engines_own = set(native_lab.must("get", "secrets", "-n", "kyverno", "-o", "name").split()) - {"secret/ivpcred"}
    native_lab.reset()
    assert "namespace/reset-me" not in native_lab.must("get", "namespaces", "-o", "name").split()
    assert set(native_lab.must("get", "secrets", "-n", "kyverno", "-o", "name").split()) == engines_own
    compiled = json.loads(native_lab.must("get", "configmap", "config-image-policies", "-n", "cosign-system",
                                          "-o", "json"))
    assert [key for key in compiled.get("data") or {} if not key.startswith("_")] == []  # knative's _example stays


@pytest.mark.parametrize("port", [None, 5101], ids=["recipe-registry", "own-registry"])
def test_the_kind_labs_manifests_pass_the_real_api_servers_validation(native_lab: Lab, port: int | None) -> None:
    """What the kind lab applies to its cluster, checked here by the same kube-apiserver version
    (server-side dry run: schema, names and defaults, nothing stored): the KEP-1755 ConfigMap, and
    the pull Secret learners create for the private registry under the kind lab's names."""
    from labkit.lab.base import PrivateRegistry
    from labkit.lab.kind_setup import local_registry_hosting, registries

    assert isinstance(native_lab, KubectlLab)
    main, private = registries(port)
    secret = PrivateRegistry(private.push_host, private.pod_host, "labkit", "password").pull_secret()
    for manifest in (local_registry_hosting(main), secret):
        out = native_lab.kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(manifest))
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().endswith("(server dry run)"), out.stdout
