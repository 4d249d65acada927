"""A real browser: Debian's Chromium, driven by Playwright, runs notebook 05 in JupyterLab,
edits the policy in the playground and sees the decision flip.

Oracle: what JupyterLab renders — the widget's decision as the browser shows it — not labkit's own
Python objects. The notebooks are copied to a temporary directory first, so JupyterLab's autosave
never touches the committed ones. Skipped, with the reason, where Chromium or Playwright is absent
(`make system-deps` installs Chromium as root; Playwright is in the test extra).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.notebooks.test_notebooks import problems
from tests.peers import free_port

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
NOTEBOOK = "05-kyverno-imagevalidatingpolicy.ipynb"
SETUP = ("00-start-here.ipynb", "01-keys.ipynb", "02-build-and-push.ipynb", "03-sign-by-digest.ipynb")

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed (make system-deps installs Debian's chromium as root)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
nbclient = pytest.importorskip("nbclient", reason="running notebooks needs nbclient (the lab extra)")


def jupyterlab_args() -> list[str]:
    """JupyterLab's arguments as `make lab` passes them (tools/lab.sh reads the same file)."""
    lines = (ROOT / "tools" / "jupyterlab-args").read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def workshop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A lab with notebook 05's prerequisites done (00–03 executed headless), and a copy of the
    notebooks for JupyterLab to open."""
    import nbformat

    home, notebooks = tmp_path_factory.mktemp("labkit-home"), tmp_path_factory.mktemp("notebooks")
    for name in (*SETUP, NOTEBOOK):
        shutil.copy(ROOT / "notebooks" / name, notebooks / name)
    env = {k: v for k, v in os.environ.items() if k not in ("COSIGN_PASSWORD", "COSIGN_REPOSITORY")}
    env.update(LABKIT_HOME=str(home), LAB_BACKEND="embedded")
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernels nbclient starts inherit this environment
    try:
        for name in SETUP:
            nb = nbformat.read(notebooks / name, as_version=4)
            nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                    resources={"metadata": {"path": str(notebooks)}}).execute()
            assert not problems(nb), f"{name}: " + "; ".join(problems(nb))  # 05 needs their state
        yield notebooks, env
    finally:
        os.environ.clear()
        os.environ.update(saved)
        subprocess.run([sys.executable, "-m", "labkit", "lab", "down"], env=env, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def jupyterlab(workshop: tuple[Path, dict[str, str]]) -> Iterator[str]:
    notebooks, env = workshop
    port, token = free_port(), secrets.token_hex(16)
    argv = [sys.executable, "-m", "jupyter", "lab", *jupyterlab_args(), f"--port={port}",
            f"--ServerApp.token={token}", f"--ServerApp.root_dir={notebooks}", "--allow-root"]
    log = (notebooks / "jupyterlab.log").open("wb")
    server = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/status", params={"token": token}, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("JupyterLab did not start: " + (notebooks / "jupyterlab.log").read_text()[-2000:])
            time.sleep(0.3)
        yield f"{base}/lab/tree/{NOTEBOOK}?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def rendered(page: sync_api.Page, element: sync_api.Locator) -> str:
    """The element's text as the browser renders it. Run All goes on past the playground and
    JupyterLab does not render cells scrolled out of view (their innerText is empty), so scroll
    to it as a learner would, and give the rendering a bounded moment."""
    deadline = time.monotonic() + 30
    while True:
        element.scroll_into_view_if_needed()
        text = element.inner_text()
        if text or time.monotonic() > deadline:
            return text
        page.wait_for_timeout(300)


def test_playground_decision_changes_when_the_policy_is_edited(jupyterlab: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(jupyterlab)
            page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
            # The kernel must be up before Run All, or JupyterLab queues nothing.
            page.locator(".jp-StatusBar-TextItem", has_text="Idle").first.wait_for(timeout=60_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

            decision = page.locator(".labkit-decision")
            try:
                decision.first.wait_for(timeout=90_000)
            except sync_api.Error:
                page.screenshot(path=str(ARTIFACTS / "notebook-05-failure.png"))
                raise
            sync_api.expect(decision.first).to_contain_text("denied by kyverno", timeout=60_000)
            before = rendered(page, decision.first)

            editor = page.locator(".labkit-policy-editor textarea").first
            policy = editor.input_value()
            assert "/workshop/*" in policy
            editor.fill(policy.replace("/workshop/*", "/elsewhere/*"))  # the image no longer matches
            editor.blur()  # the playground decides when the editor loses focus
            sync_api.expect(decision.first).to_contain_text("admitted", timeout=60_000)
            after = rendered(page, decision.first)

            playground = page.locator(".widget-vbox:has(.labkit-decision)").first
            playground.scroll_into_view_if_needed()
            playground.screenshot(path=str(ARTIFACTS / "notebook-05-playground.png"))
        finally:
            browser.close()
    assert before.startswith("denied by kyverno: Policy workshop-signed failed") and after.startswith("admitted")
