"""Every workshop notebook, re-run on the embedded lab and diffed against its committed outputs,
then re-run on the native lab (the real engines decide) with every cell and checkpoint passing.

On each backend the notebooks share one ``LABKIT_HOME`` and run in order (01 makes the key 03
signs with), as a learner works through them. Only values that must vary are masked (MASKS);
image digests are not, because builds are reproducible. ``LABKIT_NOTEBOOKS_REGEN=1`` (``make
notebooks``) writes the new outputs back instead of comparing. ``LAB_BACKEND`` runs one backend
only (the cluster workflow sets ``kind``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pytest_notebook", reason="pytest-notebook is in the test extra: pip install -e '.[test,lab]'")
pytest.importorskip("ipykernel", reason="running notebooks needs ipykernel (the lab extra)")
from pytest_notebook.nb_regression import NBRegressionFixture  # noqa: E402

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("[0-9][0-9]-*.ipynb"))
_REGEN = os.environ.get("LABKIT_NOTEBOOKS_REGEN", "")


def regenerates(notebook: Path) -> bool:
    return _REGEN == "1" or notebook.name[:2] in _REGEN.split(",")

OUTPUTS = "/cells/*/outputs"
# (what varies, pattern, replacement): applied to committed and new outputs alike before diffing.
MASKS = (
    ("loopback ports", r"(127\.0\.0\.1|localhost):\d{2,5}", r"\1:PORT"),
    ("lab home", r"(/[\w.+-]+)+/(?=workshop\b|lab\.json|registry/|policies/|logs/)", "$LABKIT_HOME/"),
    ("lab home in `lab status`", r"(?m)^(home:\s+)\S+", r"\1$LABKIT_HOME"),
    ("public key bodies (also indented in policy YAML)", r"(-----BEGIN PUBLIC KEY-----\n)[A-Za-z0-9+/= \n]+?(?=[ ]*-----END)",
     r"\1<public key>\n"),
    # base64 of a DER ECDSA signature: a SEQUENCE, so "M" then 60+ base64 characters (P-256, P-384)
    ("ECDSA signatures (base64 DER)", r"\bM[A-Za-z0-9+/]{60,}={0,2}", "<signature>"),
    ("key fingerprints (keys are made at run time)", r"sha256:[0-9a-f]{16}…", "sha256:<key fingerprint>…"),
    ("timestamps", r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?", "<timestamp>"),
    # A signed payload names the image as HOST:PORT/repo, so its digest follows the port.
    ("signature payload digests in `tree`", r"(🍒 )sha256:[0-9a-f]{64}", r"\1sha256:<payload>"),
    ("memory addresses", r" at 0x[0-9a-f]+", " at 0x…"),
)
IGNORED = (
    "/cells/*/outputs/*/execution_count",
    "/cells/*/execution_count",
    "/cells/*/metadata",
    "/metadata/language_info",
    "/metadata/widgets",
    "/cells/*/outputs/*/data/application/vnd.jupyter.widget-view+json",
    "/cells/*/outputs/*/data/image/png",  # charts: their data is checked in text next to them
)


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
_timings: dict[tuple[str, str], float] = {}  # (notebook, backend) → seconds, written for the instructor guide; never asserted


BACKENDS = [os.environ["LAB_BACKEND"]] if os.environ.get("LAB_BACKEND") else ["embedded", "native"]
_homes: dict[str, Path] = {}


@pytest.fixture(scope="module")
def timings():
    yield
    if _timings:
        ARTIFACTS.mkdir(exist_ok=True)
        rows = [f"| {name} | {backend} | {seconds:.1f} |" for (name, backend), seconds in _timings.items()]
        (ARTIFACTS / "notebook-timings.md").write_text(
            "| notebook | backend | execution (and diff), s |\n|---|---|---|\n" + "\n".join(rows) + "\n"
            + "".join(f"| all | {b} | {sum(t for (n, nb), t in _timings.items() if nb == b):.1f} |\n"
                      for b in BACKENDS))
    for backend, home in _homes.items():
        if backend != "native":  # the session's native lab is stopped by its own fixture
            subprocess.run([sys.executable, "-m", "labkit", "lab", "down"],
                           env={**os.environ, "LABKIT_HOME": str(home)}, capture_output=True, timeout=60)


def lab_home(backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One home per backend for all its notebooks; on native, the session's lab, reset once."""
    if backend not in _homes:
        if backend == "native":
            lab = request.getfixturevalue("native_lab")
            lab.reset()
            _homes[backend] = lab.home.root
        else:
            _homes[backend] = tmp_path_factory.mktemp(f"labkit-home-{backend}")
    return _homes[backend]


def problems(nb) -> list[str]:
    """Cells that raised, and checkpoints that did not pass: a notebook must end all green."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"a cell raised {out['ename']}: {out['evalue']}")
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            if any(line.startswith("Checkpoint ") and "checks to fix" in line for line in text.splitlines()):
                found.append(text.strip())  # the checkpoint's whole report: which checks failed and their fixes
    return found


@pytest.mark.parametrize(("backend", "notebook"), [(b, n) for b in BACKENDS for n in NOTEBOOKS],
                         ids=[f"{b}-{n.stem}" for b in BACKENDS for n in NOTEBOOKS])
def test_notebook(backend: str, notebook: Path, request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory, timings: None) -> None:
    home = lab_home(backend, request, tmp_path_factory)
    env = {k: v for k, v in os.environ.items() if k not in ("COSIGN_PASSWORD", "COSIGN_REPOSITORY")}
    env.update(LABKIT_HOME=str(home), LAB_BACKEND=backend, PYTHONWARNINGS="ignore")
    regen = regenerates(notebook) and backend == "embedded"
    fixture = NBRegressionFixture(
        exec_timeout=300 if backend == "embedded" else 900,
        exec_env=env,
        diff_ignore=IGNORED,
        diff_replace=tuple((OUTPUTS, pattern, repl) for _, pattern, repl in MASKS),
        diff_color_words=False,
        diff_use_color=False,
        force_regen=regen,
    )
    # Outputs are committed from the embedded lab. On native and kind, hosts, timings and the
    # status layout differ, so there every cell must run and every checkpoint pass, without a
    # diff; regenerating, the fixture reports the difference it wrote back, and the same holds.
    start = time.perf_counter()
    result = fixture.check(str(notebook), raise_errors=backend == "embedded" and not regen)
    _timings[(notebook.stem, backend)] = time.perf_counter() - start
    assert not problems(result.nb_final), f"{notebook.name}: " + "; ".join(problems(result.nb_final))
    if regen:
        without_machine_values(notebook)


# What a committed output must not carry from the machine that ran it: the lab's home (a
# temporary directory there) and its loopback ports, saved as the comparison masks them.
MACHINE_MASKS = [(pattern, repl) for what, pattern, repl in MASKS
                 if what.startswith("lab home") or what == "loopback ports"]


def without_machine_values(notebook: Path) -> None:
    """A regenerated notebook is committed: its outputs read ``$LABKIT_HOME`` and
    ``127.0.0.1:PORT``, as the comparison masks them, so no machine's paths or ports are saved."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = _unpath(out["text"])
            if "text/plain" in out.get("data", {}):
                out["data"]["text/plain"] = _unpath(out["data"]["text/plain"])
    nbformat.write(nb, notebook)


def _unpath(text: str) -> str:
    for pattern, repl in MACHINE_MASKS:
        text = re.sub(pattern, repl, text)
    return text


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_carry_no_machine_paths_or_ports(notebook: Path) -> None:
    import nbformat

    found = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            found += [line for line in text.splitlines() if _unpath(line) != line]  # not yet masked
            found += re.findall(r"(?:/tmp|/home|/root|/Users|/var/folders)/[\w.+-]+", text)
    assert not found, f"{notebook.name}: regenerate it (`make notebooks NB={notebook.stem[:2]}`): {found[:5]}"


def test_masks_are_narrow() -> None:
    """A mask must not swallow what the notebooks teach: digests, tags, exit codes."""
    digest = "sha256:" + "ab" * 32
    for _, pattern, _repl in MASKS:
        assert not re.search(pattern, digest), pattern
        assert not re.search(pattern, "127.0.0.1/workshop/hello:v1"), pattern
        assert not re.search(pattern, "[exit code 10]"), pattern


def _drafts() -> list[Path]:
    return sorted((NOTEBOOKS[0].parent / "src").glob("*.py")) if NOTEBOOKS else []


@pytest.mark.parametrize("draft", _drafts(), ids=lambda p: p.stem)
def test_notebook_matches_its_draft(draft: Path) -> None:
    """notebooks/src/NN-*.py is what authors edit; the committed notebook must be built from it."""
    import importlib.util

    import nbformat

    spec = importlib.util.spec_from_file_location("notebook_from_py", draft.parents[2] / "tools" / "notebook_from_py.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    notebook = draft.parents[1] / f"{draft.stem}.ipynb"
    assert notebook.exists(), f"{notebook.name} is missing: run `make notebooks NB={draft.stem[:2]}`"
    committed = [(c.cell_type, c.source) for c in nbformat.read(notebook, as_version=4).cells]
    drafted = [(c.cell_type, c.source) for c in module.cells_from(draft.read_text())]
    assert committed == drafted, f"{notebook.name} is stale: run `make notebooks NB={draft.stem[:2]}`"
