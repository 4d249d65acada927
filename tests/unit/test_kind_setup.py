"""What the kind lab creates, checked without Docker against upstream's own files.

Oracles (tests/fixtures/kind/SOURCE.md, tests/fixtures/charts/SOURCE.md): kind v0.32.0's
local-registry recipe (site/static/examples/kind-with-registry.sh) and its node image's containerd
config; containerd v2.3.1's CRI images plugin; the Kyverno chart 3.9.1 and the policy-controller
chart 0.10.6 (values.yaml, values.schema.json, templates). The docker inspect shapes are the ones
the recipe's own `docker inspect -f` templates read (.State.Running, .NetworkSettings.Networks.kind).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit.lab.kind_setup import (
    CERTS_D,
    CHARTS,
    KYVERNO,
    PC_WEBHOOKS,
    POLICY_CONTROLLER,
    Created,
    deployment_health,
    helm_environment,
    helm_install_args,
    helm_values,
    hosts_files,
    kind_config,
    local_registry_hosting,
    registries,
    registry_mismatches,
    resolved_elsewhere,
    teardown_commands,
    webhooks_without_ca,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RECIPE = (FIXTURES / "kind" / "kind-with-registry.sh").read_text()
CHART_DIRS = {KYVERNO: FIXTURES / "charts" / "kyverno-3.9.1",
              POLICY_CONTROLLER: FIXTURES / "charts" / "policy-controller-0.10.6"}


def _recipe_var(name: str) -> str:
    match = re.search(rf"^{name}='([^']*)'$", RECIPE, re.M)
    assert match, name
    return match.group(1)


def _expand(text: str) -> str:
    """The recipe's shell variables as the recipe sets them."""
    return text.replace("${reg_name}", _recipe_var("reg_name")).replace("${reg_port}", _recipe_var("reg_port"))


def _heredoc(after: str) -> str:
    """The body of the heredoc that starts on the line containing ``after``."""
    start = RECIPE.index(after)
    body_start = RECIPE.index("\n", start) + 1
    return RECIPE[body_start:RECIPE.index("\nEOF\n", body_start) + 1]


def test_the_default_registry_is_the_recipes() -> None:
    main, private = registries()
    assert (main.container, main.port) == (_recipe_var("reg_name"), int(_recipe_var("reg_port")))
    assert f'-p "127.0.0.1:${{reg_port}}:{5000}"' in RECIPE  # the port inside the container
    assert private.port == main.port + 1 and private.container != main.container


def test_a_chosen_port_gives_the_lab_containers_of_its_own() -> None:
    main, private = registries(5101)
    assert (main.container, main.port, private.port) == ("labkit-registry", 5101, 5102)
    assert _recipe_var("reg_name") not in (main.container, private.container)


def test_the_kind_config_is_the_recipes_without_its_containerd_patch() -> None:
    recipe_config = yaml.safe_load(_heredoc("kind create cluster --config=-"))
    [patch] = recipe_config.pop("containerdConfigPatches")
    assert 'config_path = "/etc/containerd/certs.d"' in patch
    assert "the containerd config patch is not necessary with images from kind v0.27.0+" in RECIPE
    config = kind_config()
    assert config.pop("name") == "labkit"
    assert config == recipe_config


def test_the_node_image_reads_hosts_toml_from_certs_d_without_a_patch() -> None:
    """kind's containerd config sets no registry options, so containerd v2.3.1 (what kind
    v0.32.0's base image builds) defaults config_path to include /etc/containerd/certs.d."""
    node_config = tomllib.loads((FIXTURES / "kind" / "containerd-config.toml").read_text())
    cri = node_config["plugins"]["io.containerd.grpc.v1.cri"]
    assert "registry" not in cri and node_config["version"] == 2
    assert (FIXTURES / "kind" / "kind-base-Dockerfile.excerpt").read_text().strip() == 'ARG CONTAINERD_VERSION="v2.3.1"'
    plugin = (FIXTURES / "kind" / "containerd-v2.3.1-cri-images-plugin.go.excerpt").read_text()
    assert 'config.Registry.ConfigPath == "" && len(config.Registry.Mirrors) == 0' in plugin
    default = re.search(r'config\.Registry\.ConfigPath = "([^"]+)"', plugin)
    assert default and CERTS_D in default.group(1).split(":")


def test_hosts_toml_is_the_recipes_for_each_name_of_each_registry() -> None:
    recipe_dir = _expand(re.search(r'^REGISTRY_DIR="([^"]+)"$', RECIPE, re.M).group(1))  # type: ignore[union-attr]
    recipe_hosts = _expand(_heredoc('cp /dev/stdin "${REGISTRY_DIR}/hosts.toml"'))
    main, private = registries()
    files = hosts_files((main, private))
    assert files[f"{recipe_dir}/hosts.toml"] == recipe_hosts
    assert set(files) == {f"{CERTS_D}/{name}/hosts.toml" for name in (*main.names, *private.names)}
    assert files[f"{CERTS_D}/registry.local:5000/hosts.toml"] == recipe_hosts  # the pods' name, same registry
    for path, content in files.items():
        [host] = tomllib.loads(content)["host"]
        container = private.container if "private" in path or str(private.port) in path else main.container
        assert host == f"http://{container}:5000"


def test_the_local_registry_hosting_configmap_extends_the_recipes() -> None:
    recipe = yaml.safe_load(_expand(_heredoc("kubectl apply -f -")))
    ours = local_registry_hosting(registries()[0])
    assert (ours["apiVersion"], ours["kind"], ours["metadata"]) == (recipe["apiVersion"], recipe["kind"],
                                                                    recipe["metadata"])
    recipe_hosting = yaml.safe_load(recipe["data"]["localRegistryHosting.v1"])
    hosting = yaml.safe_load(ours["data"]["localRegistryHosting.v1"])
    assert {k: hosting[k] for k in recipe_hosting} == recipe_hosting
    assert hosting["hostFromContainerRuntime"] == hosting["hostFromClusterNetwork"] == "registry.local:5000"


def _inspect(*, image: str = "registry:3", env: tuple[str, ...] = (), running: bool = True,
             kind_aliases: list[str] | None = None) -> dict[str, Any]:
    """`docker inspect` of a container made by the recipe's `docker run` (then, optionally, its step 4)."""
    networks: dict[str, Any] = {"bridge": {"Aliases": None}}
    if kind_aliases is not None:
        networks["kind"] = {"Aliases": kind_aliases}
    return {"Config": {"Image": image, "Env": ["PATH=/usr/local/sbin:/usr/local/bin", *env]},
            "State": {"Running": running},
            "HostConfig": {"PortBindings": {"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5001"}]}},
            "NetworkSettings": {"Networks": networks}}


def test_the_recipes_own_registry_does_not_fit_and_says_why() -> None:
    main = registries()[0]
    problems = registry_mismatches(_inspect(kind_aliases=[]), main)  # as the recipe leaves it
    assert any("deletes are off" in p for p in problems)
    assert any("without the alias registry.local" in p for p in problems)
    assert len(problems) == 2


def test_a_registry_with_deletes_and_no_kind_network_yet_fits() -> None:
    main = registries()[0]
    assert registry_mismatches(_inspect(env=("REGISTRY_STORAGE_DELETE_ENABLED=true",)), main) == []
    assert registry_mismatches(_inspect(image="docker.io/library/registry:3.0.0@sha256:" + "a" * 64,
                                        env=("REGISTRY_STORAGE_DELETE_ENABLED=true",),
                                        kind_aliases=["registry.local", "abc123"]), main) == []


def test_other_images_stopped_containers_and_other_ports_do_not_fit() -> None:
    fits = ("REGISTRY_STORAGE_DELETE_ENABLED=true",)
    assert registry_mismatches(_inspect(image="nginx:1.29", env=fits), registries()[0]) == [
        "its image is 'nginx:1.29', not distribution's registry"]
    assert registry_mismatches(_inspect(env=fits, running=False), registries()[0]) == ["it is not running"]
    assert registry_mismatches(_inspect(env=fits), registries(5101)[0]) == [
        "it does not publish its port 5000 on 5101"]


def test_an_alias_held_by_another_container_is_noticed() -> None:
    getent = "172.18.0.3      STREAM registry.local\n172.18.0.3      DGRAM  \n172.18.0.9      STREAM \n"
    assert resolved_elsewhere(getent, "172.18.0.3") == ["172.18.0.9"]
    assert resolved_elsewhere("172.18.0.3      STREAM registry.local\n", "172.18.0.3") == []


def test_teardown_removes_what_was_recorded_and_nothing_else(tmp_path: Path) -> None:
    assert teardown_commands(Created()) == []
    record = tmp_path / "created.json"
    Created(cluster="labkit", containers=["labkit-registry-private"], connections=["kind-registry"],
            helm_releases=["kyverno/kyverno"]).save(record)
    commands = teardown_commands(Created.load(record))
    assert commands == [["kind", "delete", "cluster", "--name", "labkit"],
                        ["docker", "network", "disconnect", "kind", "kind-registry"],
                        ["docker", "rm", "-f", "labkit-registry-private"]]  # the releases go with the cluster
    assert teardown_commands(Created(helm_releases=["kyverno/kyverno"])) == [
        ["helm", "uninstall", "kyverno", "--namespace", "kyverno"]]


# --- Helm -----------------------------------------------------------------------------------


def _chart_values(chart: Any) -> dict[str, Any]:
    return dict(yaml.safe_load((CHART_DIRS[chart] / "values.yaml").read_text()))


def _leaves(values: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, value in values.items():
        out += _leaves(value, (*prefix, key)) if isinstance(value, dict) else [((*prefix, key), value)]
    return out


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.release)
def test_the_pinned_versions_are_the_charts(chart: Any) -> None:
    meta = yaml.safe_load((CHART_DIRS[chart] / "Chart.yaml").read_text())
    assert (str(meta["version"]), str(meta["appVersion"])) == (chart.version, chart.app_version)
    assert meta["name"] == chart.chart


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.release)
def test_every_value_given_is_one_the_chart_has_of_the_same_type(chart: Any) -> None:
    defaults = _chart_values(chart)
    for path, value in _leaves(helm_values(chart)):
        node: Any = defaults
        for key in path:
            assert isinstance(node, dict) and key in node, f"{chart.chart} has no value {'.'.join(path)}"
            node = node[key]
        assert type(node) is type(value), f"{'.'.join(path)}: {node!r} in the chart, {value!r} given"


def test_the_values_validate_against_the_schema_where_a_chart_has_one() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import json

    schemas = {chart: CHART_DIRS[chart] / "values.schema.json" for chart in CHARTS}
    assert not schemas[KYVERNO].exists() and schemas[POLICY_CONTROLLER].exists()  # Kyverno's chart ships none
    schema = json.loads(schemas[POLICY_CONTROLLER].read_text())
    jsonschema.validate({**_chart_values(POLICY_CONTROLLER), **helm_values(POLICY_CONTROLLER)}, schema)


def test_kyvernos_insecure_registry_value_becomes_the_controllers_flag() -> None:
    helpers = (CHART_DIRS[KYVERNO] / "templates" / "_helpers.tpl").read_text()
    block = helpers[helpers.index("{{- with .registryClient -}}"):]
    assert '(print "--allowInsecureRegistry=" .allowInsecure)' in block[:block.index("{{- end -}}")]
    assert helm_values(KYVERNO)["features"]["registryClient"] == {"allowInsecure": True}
    for controller in ("admission-controller", "reports-controller"):
        deployment = (CHART_DIRS[KYVERNO] / "templates" / controller / "deployment.yaml").read_text()
        assert '"registryClient"' in deployment, controller


def test_helm_installs_from_the_repository_url_with_its_own_directories(tmp_path: Path) -> None:
    for chart in CHARTS:
        args = helm_install_args(chart, tmp_path / "kubeconfig", tmp_path / "values.yaml", 600)
        assert args[:5] == ["helm", "upgrade", "--install", chart.release, chart.chart]
        assert args[args.index("--repo") + 1] == chart.repo and args[args.index("--version") + 1] == chart.version
        assert args[args.index("--values") + 1] == str(tmp_path / "values.yaml") and "repo" not in args[1:3]
    env = helm_environment(tmp_path / "helm")
    assert set(env) == {"HELM_CONFIG_HOME", "HELM_CACHE_HOME", "HELM_DATA_HOME"}
    assert all(Path(v).is_relative_to(tmp_path / "helm") for v in env.values())


# --- policy-controller's webhooks and the Deployments' health ---------------------------------


def _chart_webhooks() -> set[tuple[str, str]]:
    """(kind, name) of every webhook configuration the chart's templates create, with the chart's values."""
    values, found = _chart_values(POLICY_CONTROLLER), set()
    for template in (CHART_DIRS[POLICY_CONTROLLER] / "templates" / "webhook").glob("*.yaml"):
        text = template.read_text()
        for kind, path in re.findall(r"kind: (\w+WebhookConfiguration)\nmetadata:\n  name: \{\{ required \"[^\"]*\" "
                                     r"\.Values\.([\w.]+) \}\}", text):
            node = values
            for key in path.split("."):
                node = node[key]
            found.add((kind.lower(), str(node)))
    return found


def test_the_webhooks_waited_for_are_every_one_the_chart_creates() -> None:
    assert set(PC_WEBHOOKS) == _chart_webhooks() and len(PC_WEBHOOKS) == 4


def _configuration(kind: str, name: str, bundles: list[str]) -> dict[str, Any]:
    return {"kind": {"mutatingwebhookconfiguration": "MutatingWebhookConfiguration",
                     "validatingwebhookconfiguration": "ValidatingWebhookConfiguration"}[kind],
            "metadata": {"name": name},
            "webhooks": [{"name": name, "clientConfig": {"service": {"name": "webhook"},
                                                          **({"caBundle": b} if b else {})}} for b in bundles]}


def test_the_webhook_wait_needs_every_entry_filled() -> None:
    as_helm_creates = [_configuration(kind, name, [""]) for kind, name in PC_WEBHOOKS]
    assert webhooks_without_ca(as_helm_creates) == [f"{kind}/{name}" for kind, name in PC_WEBHOOKS]
    filled = [_configuration(kind, name, ["LS0tLS1CRUdJTi"]) for kind, name in PC_WEBHOOKS]
    assert webhooks_without_ca(filled) == []
    half = [*filled[:3], _configuration(*PC_WEBHOOKS[3], ["LS0tLS1CRUdJTi", ""])]
    assert webhooks_without_ca(half) == ["validatingwebhookconfiguration/validating.clusterimagepolicy.sigstore.dev"]
    assert webhooks_without_ca(filled[1:]) == ["mutatingwebhookconfiguration/policy.sigstore.dev"]


def test_deployment_health_says_zero_when_none_is_ready() -> None:
    listed = {"kind": "List", "items": [
        {"metadata": {"name": "kyverno-admission-controller"}, "spec": {"replicas": 1},
         "status": {"replicas": 1, "readyReplicas": 1}},
        {"metadata": {"name": "kyverno-reports-controller"}, "spec": {"replicas": 1},
         "status": {"replicas": 1, "unavailableReplicas": 1}}]}  # the API server omits readyReplicas: 0
    assert deployment_health(listed) == "kyverno-admission-controller=1/1 kyverno-reports-controller=0/1"
    assert deployment_health({"items": []}) == ""
