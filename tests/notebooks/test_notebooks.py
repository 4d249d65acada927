"""Every workshop notebook, re-run on the embedded lab and diffed against its committed outputs,
then the trainer's version (with the exercises' solutions) re-run on the embedded lab and on the
native lab (the real engines decide), with every cell, checkpoint and exercise check passing.

Learners' notebooks carry no solutions, so there every exercise check must report what is still
to do; in the trainer's, after the solution, the same check must pass.

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

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
DRAFTS = ROOT / "notebooks" / "src"
_REGEN = os.environ.get("LABKIT_NOTEBOOKS_REGEN", "")


def regenerates(notebook: Path) -> bool:
    return _REGEN == "1" or notebook.name[:2] in _REGEN.split(",")

OUTPUTS = "/cells/*/outputs"
# (what varies, pattern, replacement): applied to committed and new outputs alike before diffing.
MASKS = (
    ("loopback ports", r"(127\.0\.0\.1|localhost):\d{2,5}", r"\1:PORT"),
    ("lab home", r"(/[\w.+-]+)+/(?=workshop\b|lab\.json|ports\.json|registry/|policies/|logs/)", "$LABKIT_HOME/"),
    ("loopback ports in `lab status`", r"(?m)^(ports:\s+)[\w=\- ]+?(?= \(kept)", r"\1<NAME=PORT …>"),
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
# (backend, with solutions): the learner's notebooks on embedded only (their outputs are committed),
# the trainer's on every backend.
RUNS = [(b, False) for b in BACKENDS if b == "embedded"] + [(b, True) for b in BACKENDS]
_homes: dict[str, Path] = {}


@pytest.fixture(scope="module")
def timings():
    yield
    if _timings:
        ARTIFACTS.mkdir(exist_ok=True)
        rows = [f"| {name} | {backend} | {seconds:.1f} |" for (name, backend), seconds in _timings.items()
                if not backend.endswith("+solutions")]
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


def _outputs(nb) -> list[str]:
    return [out.get("text") or out.get("data", {}).get("text/plain", "")
            for cell in nb.cells for out in cell.get("outputs", [])]


def problems(nb) -> list[str]:
    """Cells that raised, and checkpoints that did not pass: a notebook must end all green."""
    found = [f"a cell raised {out['ename']}: {out['evalue']}"
             for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    for text in _outputs(nb):
        if any(line.startswith("Checkpoint ") and "checks to fix" in line for line in text.splitlines()):
            found.append(text.strip())  # the checkpoint's whole report: which checks failed and their fixes
    return found


def exercise_reports(nb) -> list[str]:
    """Each exercise check's report: its first line (``Exercise NN · …: …``) and its items."""
    return [text.strip() for text in _outputs(nb) if text.startswith("Exercise ")]


def trainers_notebook(notebook: Path, directory: Path) -> Path:
    """The notebook as ``make solutions`` writes it: the learner's, plus the solution cells."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("notebook_from_py", ROOT / "tools" / "notebook_from_py.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    target = directory / notebook.name
    module.main(str(DRAFTS / f"{notebook.stem}.py"), str(target), solutions=True)
    return target


def exercise_reports_expected(notebook: Path) -> bool:
    return "## Exercise" in (DRAFTS / f"{notebook.stem}.py").read_text()


@pytest.mark.parametrize(("backend", "solutions", "notebook"), [(b, s, n) for b, s in RUNS for n in NOTEBOOKS],
                         ids=[f"{b}{'+solutions' if s else ''}-{n.stem}" for b, s in RUNS for n in NOTEBOOKS])
def test_notebook(backend: str, solutions: bool, notebook: Path, request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory, timings: None) -> None:
    run = f"{backend}+solutions" if solutions and backend == "embedded" else backend
    home = lab_home(run, request, tmp_path_factory)
    env = {k: v for k, v in os.environ.items() if k not in ("COSIGN_PASSWORD", "COSIGN_REPOSITORY")}
    env.update(LABKIT_HOME=str(home), LAB_BACKEND=backend, PYTHONWARNINGS="ignore")
    regen = regenerates(notebook) and backend == "embedded" and not solutions
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
    path = trainers_notebook(notebook, tmp_path_factory.mktemp("solutions")) if solutions else notebook
    start = time.perf_counter()
    result = fixture.check(str(path), raise_errors=backend == "embedded" and not regen and not solutions)
    _timings[(notebook.stem, run)] = time.perf_counter() - start
    assert not problems(result.nb_final), f"{notebook.name}: " + "; ".join(problems(result.nb_final))
    # Each exercise's check: still to do in the learner's notebook, passing after the solution.
    reports = exercise_reports(result.nb_final)
    assert bool(reports) == exercise_reports_expected(notebook), f"{notebook.name}: exercise check {reports}"
    for report in reports:
        assert ("checks to fix" not in report.splitlines()[0]) if solutions else ("checks to fix" in report), \
            f"{notebook.name} ({'with' if solutions else 'without'} solutions): {report}"
    if regen:
        without_machine_values(notebook)


# What a committed output must not carry from the machine that ran it: the lab's home (a
# temporary directory there) and its loopback ports, saved as the comparison masks them.
MACHINE_MASKS = [(pattern, repl) for what, pattern, repl in MASKS
                 if what.startswith(("lab home", "loopback ports"))]


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
    drafted = [(c.cell_type, c.source) for c in module.cells_from(draft.read_text())]  # no solutions
    assert committed == drafted, f"{notebook.name} is stale: run `make notebooks NB={draft.stem[:2]}`"


@pytest.mark.parametrize("draft", _drafts(), ids=lambda p: p.stem)
def test_notebook_starts_with_its_prerequisites(draft: Path) -> None:
    """From 02 on, the cell that starts the lab checks what the notebook uses from earlier ones."""
    number, lines = draft.stem[:2], draft.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("lab = workshop.start(")]
    if number in ("00", "01"):  # the first notebooks need nothing earlier
        assert not starts
        return
    assert starts and lines[starts[0] + 1].startswith(f'check.ready_for("{number}", lab)'), draft.name


def test_a_skipped_notebook_stops_at_its_first_cell(tmp_path: Path) -> None:
    """Notebook 06 opened first, on a lab with nothing in it: the first cell names the notebook to
    finish first and its fix, and nothing after it runs (no FileNotFoundError, no false pass)."""
    import nbclient
    import nbformat

    notebook = next(n for n in NOTEBOOKS if n.name.startswith("06-"))
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None  # as a learner opens it: run nothing yet
    env = {k: v for k, v in os.environ.items() if k not in ("COSIGN_PASSWORD", "COSIGN_REPOSITORY")}
    env.update(LABKIT_HOME=str(tmp_path), LAB_BACKEND="embedded", PYTHONWARNINGS="ignore")
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3")
    try:
        with pytest.raises(nbclient.exceptions.CellExecutionError) as raised:
            client.execute(env=env)  # the kernel's environment: this test's empty lab home
    finally:
        subprocess.run([sys.executable, "-m", "labkit", "lab", "down"], env=env, capture_output=True, timeout=60)
    error = raised.value
    assert error.ename == "PrerequisiteError", error
    assert "notebook 06 needs notebook 01 finished first" in error.evalue
    ran = [c for c in nb.cells if c.cell_type == "code" and c.get("execution_count")]
    assert len(ran) == 1, "cells after the prerequisites check ran"
