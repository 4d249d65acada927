"""Progress reporting: the push callback accounts for every blob once; bars draw only when enabled."""

from __future__ import annotations

import io

import pytest

from labkit import workshop
from labkit._internal.progress import byte_bar, step_bar
from labkit.oci.build import build_image
from labkit.oci.client import RegistryClient
from labkit.oci.model import Platform


def test_push_progress_counts_every_blob_of_every_platform(labkit_registry) -> None:
    image = build_image(workshop.SAMPLE_APP, platforms=[Platform.parse("linux/amd64"), Platform.parse("linux/arm64/v8")])
    sizes: list[int] = []
    with RegistryClient() as client:
        client.push_image(f"{labkit_registry.host}/progress/app:v1", image, progress=sizes.append)
    assert sum(sizes) == sum(len(b) for img in image.images for b in img.blobs().values())


def test_bars_draw_only_when_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm")
    import tqdm.auto

    out = io.StringIO()
    monkeypatch.setattr(tqdm.auto, "tqdm", lambda **kw: __import__("tqdm").tqdm(file=out, **kw))
    with step_bar(["a", "b"], "lab", enabled=True) as step:
        step("a")
        step("b")
    with byte_bar(10, "push", enabled=False) as advance:
        advance(10)
    drawn = out.getvalue()
    assert "lab" in drawn and "2/2" in drawn and "push" not in drawn
