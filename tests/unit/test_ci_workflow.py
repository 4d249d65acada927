"""labkit.ci_workflow on the repository's template and on the mistakes notebook 09 warns about.
Oracles: GitHub's expression syntax (steps.<id>.outputs.<name>); cosign sign's flags and their
defaults (sigstore/cosign cmd/cosign/cli/options/sign.go at v2.6.x and v3.x, signcommon/common.go:
v3 refuses --new-bundle-format=false with a signing config; options/root.go binds COSIGN_<FLAG>);
sigstore/cosign-installer's action.yml default cosign-release at each tag. What real cosign v3.1.3
writes with and without the flags is replayed in tests/interop/test_ci_template_cosign.py."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from labkit.ci_workflow import KEYLESS_TEMPLATE, TEMPLATE, check_workflow, github_keyless_identity, load_workflow
from labkit.errors import UsageError


def _variant(tmp_path: Path, old: str | tuple[str, ...], new: str) -> Path:
    """The template with ``old`` (each of them, for a tuple) replaced by ``new``."""
    text = TEMPLATE.read_text()
    for part in (old,) if isinstance(old, str) else old:
        assert part in text
        text = text.replace(part, new)
    path = tmp_path / "workflow.yml"
    path.write_text(text)
    return path


SIGN = ('cosign sign --yes --recursive --key env://COSIGN_PRIVATE_KEY \\\n'
        '            --new-bundle-format=false --use-signing-config=false \\\n'
        '            "${IMAGE}@${DIGEST}"')
CLASSIC = "            --new-bundle-format=false --use-signing-config=false \\\n"
RELEASE = "        with:\n          cosign-release: v3.1.3  # the installer's own default is v3.0.6\n"
QEMU = ("      - uses: docker/setup-qemu-action@96fe6ef7f33517b61c61be40b68a1882f3264fb8 # v4.2.0\n"
        "        with:\n"
        "          platforms: arm64  # the Dockerfile's RUN steps execute arm64 code on this amd64 runner\n")
LOWER = 'run: echo "IMAGE=ghcr.io/${GITHUB_REPOSITORY,,}" >> "$GITHUB_ENV"'


def _failed(path: Path) -> list[str]:
    return [f.what for f in check_workflow(path) if not f.ok]


def test_the_template_signs_the_build_digest_and_pins_every_action() -> None:
    findings = check_workflow(TEMPLATE)
    assert findings and all(f.ok for f in findings), [f.what for f in findings if not f.ok]
    assert any("signs the digest output by step 'build'" in f.what for f in findings)


def test_the_template_passes_each_new_rule() -> None:
    whats = [f.what for f in check_workflow(TEMPLATE)]
    assert SIGN in TEMPLATE.read_text() and QEMU in TEMPLATE.read_text() and RELEASE in TEMPLATE.read_text()
    assert any("cosign v3.1.3 (cosign-release: v3.1.3) signs in the classic sha256-<digest>.sig format" in w
               for w in whats), whats
    assert any("builds linux/arm64 on an amd64 runner, with QEMU set up first" in w for w in whats), whats
    assert any("lower-cases the image name (${GITHUB_REPOSITORY,,})" in w for w in whats), whats


@pytest.mark.parametrize("old, new, complaint", [
    ('"${IMAGE}@${DIGEST}"', '"${IMAGE}:${{ github.sha }}"', "a tag"),
    ("DIGEST: ${{ steps.build.outputs.digest }}", "DIGEST: latest-digest", "not the build step's output"),
    ("- id: build\n", "- id: compile\n", "not the build step's output"),
    ("actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1", "actions/checkout@v7", "not pinned"),
])
def test_mistakes_are_named(tmp_path: Path, old: str, new: str, complaint: str) -> None:
    bad = [f.what for f in check_workflow(_variant(tmp_path, old, new)) if not f.ok]
    assert len(bad) == 1 and complaint in bad[0], bad


BUNDLE = "signs in the Sigstore bundle format (an OCI referrer, no sha256-<digest>.sig tag)"
REFUSES = "refuses --new-bundle-format=false while it uses a signing config"


@pytest.mark.parametrize("old, new, complaint", [
    # cosign v3 without the flags: a bundle the ClusterPolicy and policy-controller's key authorities cannot read
    (CLASSIC, "", f"cosign v3.1.3 (cosign-release: v3.1.3) {BUNDLE}"),
    (CLASSIC, "            --use-signing-config=false \\\n", BUNDLE),
    (CLASSIC, "            --new-bundle-format --use-signing-config=false \\\n", BUNDLE),
    (CLASSIC, "            --new-bundle-format=false --use-signing-config=false --new-bundle-format=true \\\n", BUNDLE),
    # the installer's default: v4.1.2 installs cosign v3.0.6
    ((RELEASE, CLASSIC), "", f"cosign v3.0.6 (the default of sigstore/cosign-installer v4.1.2) {BUNDLE}"),
    # cosign v3 refuses the first flag alone (it keeps its signing config on)
    (CLASSIC, "            --new-bundle-format=false \\\n", REFUSES),
    (CLASSIC, "            --new-bundle-format=false --use-signing-config=true \\\n", REFUSES),
    (CLASSIC, "            --new-bundle-format=false --signing-config sc.json \\\n", REFUSES),
    # cosign before v2.6.0 does not know the flags at all
    ("cosign-release: v3.1.3", "cosign-release: v2.5.0",
     "cosign v2.5.0 (cosign-release: v2.5.0) has no --new-bundle-format"),
    # arm64 on an amd64 runner needs QEMU first, with an arm64 emulator
    (QEMU, "", "builds linux/arm64 on an amd64 runner without docker/setup-qemu-action before it"),
    ("platforms: arm64  #", "platforms: riscv64  #", "installs emulators only for riscv64, not arm64"),
    ("runs-on: ubuntu-24.04 ", "runs-on: ubuntu-24.04-arm ", "builds linux/amd64 on an arm64 runner, but"),
    # names from github.repository keep the owner's case
    (LOWER, 'run: echo "IMAGE=ghcr.io/${GITHUB_REPOSITORY}" >> "$GITHUB_ENV"',
     "names an image with ${GITHUB_REPOSITORY}, which keeps the owner's upper case"),
    ("tags: ${{ env.IMAGE }}:", "tags: ghcr.io/${{ github.repository }}:",
     "step build, with tags: names an image with ${{ github.repository }}"),
    ("    steps:\n", "    env:\n      IMAGE: ghcr.io/${{ github.repository_owner }}/app\n    steps:\n",
     "job build-sign, env IMAGE: names an image with ${{ github.repository_owner }}"),
])
def test_each_breakage_of_the_new_rules_fails_once_with_a_fix(tmp_path: Path, old: str | tuple[str, ...],
                                                              new: str, complaint: str) -> None:
    bad = [f for f in check_workflow(_variant(tmp_path, old, new)) if not f.ok]
    assert len(bad) == 1 and complaint in bad[0].what, [f.what for f in bad]
    assert bad[0].fix, bad[0].what


@pytest.mark.parametrize("installer, source", [
    ("a" * 40, "cosign (sigstore/cosign-installer at a commit labkit does not know, counted as v3: every "
               "installer since v4.0.0 installs cosign v3"),
    ("v4", "cosign v3 (the default of sigstore/cosign-installer v4"),
])
def test_an_installer_of_unknown_default_counts_as_cosign_v3(tmp_path: Path, installer: str, source: str) -> None:
    path = _variant(tmp_path, (RELEASE, CLASSIC), "")
    path.write_text(path.read_text().replace("6f9f17788090df1f26f669e9d70d6ae9567deba6", installer))
    bad = [f.what for f in check_workflow(path) if not f.ok and "format" in f.what]
    assert len(bad) == 1 and f"{source}) {BUNDLE}" in bad[0], bad


def test_the_fixes_name_the_exact_change(tmp_path: Path) -> None:
    [bundle] = [f for f in check_workflow(_variant(tmp_path, CLASSIC, "")) if not f.ok]
    assert bundle.fix == "add --new-bundle-format=false --use-signing-config=false to cosign sign " \
                         "(both: cosign v3 refuses the first alone)"
    [refused] = [f for f in check_workflow(_variant(tmp_path, CLASSIC, "            --new-bundle-format=false \\\n"))
                 if not f.ok]
    assert refused.fix.startswith("add --use-signing-config=false")
    [qemu] = [f for f in check_workflow(_variant(tmp_path, QEMU, "")) if not f.ok]
    assert "docker/setup-qemu-action" in qemu.fix and "platforms: arm64" in qemu.fix
    [name] = [f for f in check_workflow(_variant(tmp_path, LOWER, LOWER.replace(",,", ""))) if not f.ok]
    assert '${GITHUB_REPOSITORY,,}' in name.fix and "$GITHUB_ENV" in name.fix


@pytest.mark.parametrize("old, new", [
    # cosign v2 signs .sig by default: the flags are not needed (from the installer's default, or pinned)
    ((RELEASE, CLASSIC), ""),
    ("cosign-release: v3.1.3", "cosign-release: v2.6.1"),
])
def test_cosign_v2_signs_the_classic_format_by_default(tmp_path: Path, old: str | tuple[str, ...],
                                                       new: str) -> None:
    path = _variant(tmp_path, old, new)
    if not new:  # cosign-installer v3.10.1, whose default is cosign v2.6.1
        path.write_text(path.read_text().replace("6f9f17788090df1f26f669e9d70d6ae9567deba6",
                                                 "7e8b541eb2e61bf99390e1afd4be13a184e9ebc5"))
    else:
        path.write_text(path.read_text().replace(CLASSIC, ""))
    findings = check_workflow(path)
    assert all(f.ok for f in findings), [f.what for f in findings if not f.ok]
    assert any("cosign v2.6.1" in f.what and "classic" in f.what for f in findings)


def test_the_flags_may_come_from_cosigns_environment_variables(tmp_path: Path) -> None:
    # cosign binds each flag to COSIGN_<FLAG> (options/root.go BindViper)
    path = _variant(tmp_path, CLASSIC, "")
    path.write_text(path.read_text().replace(
        "          COSIGN_PASSWORD: ${{ secrets.COSIGN_PASSWORD }}\n",
        "          COSIGN_PASSWORD: ${{ secrets.COSIGN_PASSWORD }}\n"
        '          COSIGN_NEW_BUNDLE_FORMAT: "false"\n          COSIGN_USE_SIGNING_CONFIG: "false"\n'))
    assert _failed(path) == []


def test_no_emulation_when_no_platform_is_foreign(tmp_path: Path) -> None:
    path = _variant(tmp_path, QEMU, "")
    path.write_text(path.read_text().replace("platforms: linux/amd64,linux/arm64", "platforms: linux/amd64"))
    assert _failed(path) == []
    assert not any("QEMU" in f.what or "qemu" in f.what for f in check_workflow(path))


def test_metadata_action_lower_cases_its_images_itself(tmp_path: Path) -> None:
    path = _variant(tmp_path, "      - id: build\n",
                    "      - id: meta\n"
                    "        uses: docker/metadata-action@c299e40c65443455700f0fdfc63efafe5b349051 # v5.10.0\n"
                    "        with:\n          images: ghcr.io/${{ github.repository }}\n"
                    "      - id: build\n")
    assert _failed(path) == []


def test_an_inline_expression_counts_and_flags_are_not_images(tmp_path: Path) -> None:
    path = _variant(tmp_path, SIGN, 'cosign sign --yes -a team=web --key env://K --new-bundle-format=false '
                    '--use-signing-config=false "ghcr.io/o/r@${{ steps.build.outputs.digest }}"')
    signs = [f for f in check_workflow(path) if "signs" in f.what]
    assert [f.ok for f in signs] == [True, True]


def test_not_a_workflow_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.yml").write_text("just: text\n")
    with pytest.raises(UsageError, match="not a GitHub Actions workflow"):
        check_workflow(tmp_path / "x.yml")


def test_a_workflow_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    # nine levels of nine aliases: 9^9 nodes once expanded; kubectl's go-yaml refuses the ratio
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    lines += [f'{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, '
              f'*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]' for i in range(8)]
    (tmp_path / "bomb.yml").write_text("\n".join(lines) + "\n")
    with pytest.raises(UsageError, match="document contains excessive aliasing"):
        load_workflow(tmp_path / "bomb.yml")


def test_notebook_09_shows_the_whole_template_in_order() -> None:
    """The draft's ``workshop.numbered`` cells follow the template from line 3 to its last line,
    so an edit to the template cannot leave a step unexplained (or a cell showing half a step)."""
    draft = Path(__file__).resolve().parents[2] / "notebooks" / "src" / "09-signing-in-ci.py"
    ranges = [(int(a), int(b)) for a, b in
              re.findall(r'numbered\("sign-by-digest\.yml", (\d+), (\d+)\)', draft.read_text())]
    assert ranges and ranges[0][0] == 3
    assert all(prev[1] + 1 == nxt[0] for prev, nxt in itertools.pairwise(ranges)), ranges
    assert ranges[-1][1] == len(TEMPLATE.read_text().splitlines())


def test_a_name_held_in_an_env_variable_counts_as_github_docs_write_it(tmp_path: Path) -> None:
    # GitHub's publishing guide: REGISTRY and IMAGE_NAME in env, joined in the tags
    path = _variant(tmp_path, "    steps:\n",
                    "    env:\n      REGISTRY: ghcr.io\n      IMAGE_NAME: ${{ github.repository }}\n    steps:\n")
    assert _failed(path) == []  # the variables alone name no image
    joined = "tags: ${{ env.REGISTRY }}/${{ env.IMAGE_NAME }}:"
    path.write_text(path.read_text().replace("tags: ${{ env.IMAGE }}:", joined))
    assert _failed(path) == ["job build-sign, step build, with tags: names an image with ${{ env.IMAGE_NAME }}, which "
                             "keeps the owner's upper case (My-Org/App), and registries accept only lower-case "
                             "repository names"]


@pytest.mark.parametrize("line", [
    "          labels: org.opencontainers.image.source=${{ github.server_url }}/${{ github.repository }}\n",
    "          build-args: SOURCE=https://github.com/${{ github.repository }}\n",
])
def test_urls_of_the_repository_are_not_image_names(tmp_path: Path, line: str) -> None:
    path = _variant(tmp_path, "          push: true\n", "          push: true\n" + line)
    assert _failed(path) == []


def test_without_an_installer_cosign_counts_as_v3(tmp_path: Path) -> None:
    installer = "      - uses: sigstore/cosign-installer@6f9f17788090df1f26f669e9d70d6ae9567deba6 # v4.1.2\n"
    path = _variant(tmp_path, (RELEASE, CLASSIC, installer), "")
    bad = _failed(path)
    assert len(bad) == 1 and "cosign (no sigstore/cosign-installer step, so the version is unknown, counted as v3) " \
        f"{BUNDLE}" in bad[0], bad


def test_cosign_run_by_its_path_is_read_too(tmp_path: Path) -> None:
    path = _variant(tmp_path, "cosign sign --yes", "$HOME/.cosign/cosign sign --yes")
    assert any("signs in the classic" in f.what for f in check_workflow(path))
    path.write_text(path.read_text().replace(CLASSIC, ""))
    assert len(_failed(path)) == 1 and BUNDLE in _failed(path)[0]


# --- keyless signing ---------------------------------------------------------------------------

FULCIO_GITHUB = Path(__file__).resolve().parents[1] / "fixtures" / "fulcio" / "github-workflow-identity.yaml"


def test_the_keyless_identity_is_the_one_fulcio_writes_for_github() -> None:
    """Fulcio's own configuration (the github-workflow issuer and its SAN template), rendered with
    GitHub's documented example of the claim, gives what labkit says a policy should pin."""
    import yaml

    config = yaml.safe_load(FULCIO_GITHUB.read_text())
    (issuer,) = [v["issuer-url"] for v in config["oidc-issuers"].values() if v["ci-provider"] == "github-workflow"]
    meta = config["ci-issuer-metadata"]["github-workflow"]
    claim = "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main"
    san = meta["subject-alternative-name-template"].replace("{{ .url }}", meta["default-template-values"]["url"]) \
        .replace("{{ .job_workflow_ref }}", claim)
    assert github_keyless_identity("octo-org/octo-automation", "oidc.yml") == (issuer, san)
    assert github_keyless_identity("o/r", "image.yml", "refs/tags/v1")[1] == \
        "https://github.com/o/r/.github/workflows/image.yml@refs/tags/v1"


def test_the_keyless_template_passes_every_rule() -> None:
    findings = check_workflow(KEYLESS_TEMPLATE)
    assert [f.what for f in findings if not f.ok] == []
    assert any("signs keyless, and the job may ask GitHub for an OIDC token" in f.what for f in findings)
    assert "id-token: write" in KEYLESS_TEMPLATE.read_text()
    issuer, identity = github_keyless_identity("OWNER/REPO", "image.yml")
    assert f"issuer:   {issuer}" in KEYLESS_TEMPLATE.read_text()
    assert f"identity: {identity}" in KEYLESS_TEMPLATE.read_text()


@pytest.mark.parametrize(("job_permissions", "workflow_permissions", "ok"), [
    ("      id-token: write\n", "{}", True),
    ("", "write-all", False),  # the job's own permissions replace the workflow's
    ("      contents: read\n", "{id-token: write}", False),
    ("      id-token: read\n", "{}", False),
])
def test_keyless_signing_needs_a_job_that_may_request_a_token(tmp_path: Path, job_permissions: str,
                                                              workflow_permissions: str, ok: bool) -> None:
    text = KEYLESS_TEMPLATE.read_text()
    text = text.replace("      id-token: write  # ask GitHub for an OIDC token: cosign trades it for a certificate "
                        "(Fulcio)\n", job_permissions)
    text = text.replace("permissions: {}  # nothing by default", f"permissions: {workflow_permissions}  #")
    path = tmp_path / "workflow.yml"
    path.write_text(text)
    keyless = [f for f in check_workflow(path) if "signs keyless" in f.what]
    assert [f.ok for f in keyless] == [ok]
    if not ok:
        assert "may not ask GitHub for an OIDC token" in keyless[0].what
        assert "id-token: write" in keyless[0].fix


def test_a_key_or_a_token_handed_over_is_not_keyless(tmp_path: Path) -> None:
    assert not [f for f in check_workflow(TEMPLATE) if "signs keyless" in f.what]
    text = KEYLESS_TEMPLATE.read_text().replace("cosign sign --yes --recursive",
                                               'cosign sign --yes --recursive --identity-token "$TOKEN"')
    path = tmp_path / "workflow.yml"
    path.write_text(text)
    assert not [f for f in check_workflow(path) if "signs keyless" in f.what]
