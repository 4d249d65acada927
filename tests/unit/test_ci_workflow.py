"""labkit.ci_workflow on the repository's template and on the mistakes notebook 09 warns about.
Oracle: GitHub's expression syntax (steps.<id>.outputs.<name>) and cosign sign's flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.ci_workflow import TEMPLATE, check_workflow, load_workflow
from labkit.errors import UsageError


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = TEMPLATE.read_text()
    assert old in text
    path = tmp_path / "workflow.yml"
    path.write_text(text.replace(old, new))
    return path


def test_the_template_signs_the_build_digest_and_pins_every_action() -> None:
    findings = check_workflow(TEMPLATE)
    assert findings and all(f.ok for f in findings), [f.what for f in findings if not f.ok]
    assert any("signs the digest output by step 'build'" in f.what for f in findings)


@pytest.mark.parametrize("old, new, complaint", [
    ('"${IMAGE}@${DIGEST}"', '"${IMAGE}:${{ github.sha }}"', "a tag"),
    ("DIGEST: ${{ steps.build.outputs.digest }}", "DIGEST: latest-digest", "not the build step's output"),
    ("- id: build\n", "- id: compile\n", "not the build step's output"),
    ("actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1", "actions/checkout@v7", "not pinned"),
])
def test_mistakes_are_named(tmp_path: Path, old: str, new: str, complaint: str) -> None:
    bad = [f.what for f in check_workflow(_variant(tmp_path, old, new)) if not f.ok]
    assert len(bad) == 1 and complaint in bad[0], bad


def test_an_inline_expression_counts_and_flags_are_not_images(tmp_path: Path) -> None:
    path = _variant(tmp_path, 'cosign sign --yes --recursive --key env://COSIGN_PRIVATE_KEY "${IMAGE}@${DIGEST}"',
                    'cosign sign --yes -a team=web --key env://K "ghcr.io/o/r@${{ steps.build.outputs.digest }}"')
    signs = [f for f in check_workflow(path) if "signs" in f.what]
    assert [f.ok for f in signs] == [True]


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
