"""``labkit``'s public names resolve to the objects their modules define, lazily."""

from __future__ import annotations

import subprocess
import sys

import labkit


def test_every_public_name_resolves() -> None:
    for name in labkit.__all__:
        assert getattr(labkit, name) is not None, name
    assert labkit.sign_image.__module__ == "labkit.signing.sign"
    assert labkit.Lab.__module__ == "labkit.lab.base"


def test_importing_labkit_loads_none_of_its_heavy_parts() -> None:
    code = ("import sys, labkit; print(' '.join(m for m in ('labkit.lab', 'labkit.policy', 'labkit.oci.client', "
            "'labkit.keys', 'yaml', 'cryptography') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == ""


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        labkit.sign  # noqa: B018
    except AttributeError as exc:
        assert "no attribute 'sign'" in str(exc)
    else:
        raise AssertionError("labkit.sign should not exist")


def test_all_lists_exactly_the_lazy_names_and_the_eager_ones() -> None:
    assert set(labkit.__all__) == set(labkit._PUBLIC) | {"LabkitError", "__version__"}
