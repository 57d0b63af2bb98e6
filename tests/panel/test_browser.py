"""Notebook 04 in a real browser: JupyterLab and the Voilà page answer an uploaded photo.

Runs the smoke pipeline, serves a parameterised copy of the notebook from a scratch folder (never
the project's notebooks/: JupyterLab autosaves) and drives headless chromium with Playwright.
Screenshots go to $METERLIB_SCREENSHOTS, else to a scratch folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from meterlib.data import splits
from meterlib.panel import answers
from meterlib.run import paths, runner
from meterlib.serve import Predictor

CHROMIUM = Path(os.environ.get("METERLIB_CHROMIUM", "/usr/bin/chromium"))
NOTEBOOK = "04_predict_panel.ipynb"
UPLOAD_NAME = "uploaded_meter.jpg"
POOR_NAME = "dark_small_meter.png"  # a photo too dark and too small to judge: its banner must give the reason
START_S, RUN_S = 120, 300  # servers start; the notebook runs (torch import, model, heat-maps) on 2 CPUs
pytestmark = [
    pytest.mark.slow, pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(),
                       reason=f"no chromium at {CHROMIUM}: apt-get install chromium (or set METERLIB_CHROMIUM)"),
]


@pytest.fixture(scope="module")
def served(smoke_run, tmp_path_factory) -> dict:
    """A scratch folder holding notebook 04 pointed at the smoke model, photos to upload, the expected answers."""
    root = tmp_path_factory.mktemp("panel_served")
    folder = root / "notebooks"
    folder.mkdir()
    [planned] = runner.plan([paths.notebooks_dir() / NOTEBOOK],
                            {"dataset": "smoke", "data_dir": str(smoke_run.dataset_dir.parent),
                             "reports_dir": str(smoke_run.reports_dir)})
    notebook = runner.prepare(planned, folder / NOTEBOOK)
    [photo] = answers.pick_photos(splits.read_manifest(smoke_run.splits_csv), 1)
    upload = shutil.copyfile(smoke_run.dataset_dir / photo, root / UPLOAD_NAME)
    poor = root / POOR_NAME
    Image.new("RGB", (24, 24), (4, 4, 4)).save(poor)
    predictor = Predictor.from_checkpoint(smoke_run.checkpoint)
    expected = {UPLOAD_NAME: predictor.predict(upload), POOR_NAME: predictor.predict(poor)}
    assert expected[POOR_NAME].reason is not None, "the smoke model named a type for a 24-pixel black photo"
    return {"root": root, "notebook": notebook, "uploads": [upload, poor], "expected": expected,
            "gallery": predictor.gallery is not None}


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """$METERLIB_SCREENSHOTS when set (to keep them), else a scratch folder: tests never write into the project."""
    kept = os.environ.get("METERLIB_SCREENSHOTS")
    folder = Path(kept) if kept else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_root() -> list[str]:
    # Jupyter servers refuse to run as root (as in many CI containers) unless told.
    return ["--allow-root"] if os.geteuid() == 0 else []


def _server_env(root: Path) -> dict:
    """The servers' environment: this Python first, Jupyter's settings and state kept in ``root``."""
    settings = root / "lab-settings"
    # No news pop-up; every cell stays rendered (the default skips cells scrolled out of view).
    for name, values in (("apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False}),
                         ("notebook-extension/tracker", {"windowingMode": "none"})):
        file = settings / "@jupyterlab" / f"{name}.jupyterlab-settings"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(values))
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "JUPYTER_CONFIG_DIR": str(root / "jupyter-config"), "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces")}


@contextlib.contextmanager
def _server(command: list[str], port: int, root: Path, log_name: str):
    """Start a server in its own process group, wait until its port answers, kill the group afterwards."""
    log = root / log_name
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=root,
                                   env=_server_env(root), start_new_session=True)
    try:
        deadline = time.monotonic() + START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"{command[2]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{command[2]} did not listen on port {port} within {START_S} s")
            time.sleep(0.5)
        yield log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def _with_log(log: Path):
    """On a browser timeout, show what the server said."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        yield
    except PlaywrightTimeout as exc:
        raise AssertionError(f"{exc}\n--- server log ---\n{log.read_text(errors='replace')[-4000:]}") from None


def _wait_for_kernel(port: int) -> None:
    """Until the server holds one kernel, idle, with the page connected to it.

    JupyterLab may start a second kernel for a fresh session and shut the first down; cells sent
    to the first are lost.
    """
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernels", timeout=10) as reply:
            kernels = json.load(reply)
        if len(kernels) == 1 and kernels[0]["execution_state"] == "idle" and kernels[0]["connections"]:
            return
        time.sleep(0.5)
    pytest.fail(f"no idle kernel with a connection within {START_S} s: {kernels}")


def _run_all_cells(page, port: int, attempts: int = 3) -> None:
    """Run ▸ Run All Cells, until the first code cell has run (a click that ran nothing is repeated)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=START_S * 1000)
    _wait_for_kernel(port)
    finished = page.locator(".jp-InputPrompt", has_text=re.compile(r"\[\d+\]"))
    for _ in range(attempts):
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
        try:
            finished.first.wait_for(state="attached", timeout=120_000)
            return
        except PlaywrightTimeout:
            _wait_for_kernel(port)
    pytest.fail(f"no cell ran after {attempts} times Run All Cells")


def _upload_and_check(page, served: dict, screenshot: Path) -> None:
    """Choose the photos with the upload button; the panel must show the Predictor's answers, an UNKNOWN's reason."""
    page.wait_for_selector(".meterlib-answer", timeout=RUN_S * 1000)  # the pre-filled answers
    # The button opens a file input that ipywidgets keeps out of the page, so answer its file chooser.
    with page.expect_file_chooser() as chooser:
        page.locator(".meterlib-upload").click()
    chooser.value.set_files([str(path) for path in served["uploads"]])
    for file_name, expected in served["expected"].items():
        name = page.locator(".meterlib-name", has_text=file_name)
        answer = page.locator(".meterlib-answer").filter(has=name)
        answer.locator(".meterlib-heatmap img").wait_for(state="visible", timeout=RUN_S * 1000)
        assert answer.locator(".meterlib-label").inner_text().strip() == expected.label
        assert answer.locator(".meterlib-unknown").count() == int(expected.unknown)
        if expected.unknown:  # the reason in plain words, then its detail
            banner = answer.locator(".meterlib-unknown").inner_text()
            assert f"UNKNOWN: {answers.REASON_WORDS[expected.reason]}: {expected.detail}." in banner
        assert expected.top_classes[0] in answer.locator(".meterlib-top").inner_text()
        if served["gallery"]:  # training photos of the predicted type and the runner-up
            assert answer.locator(".meterlib-neighbours img").count() >= 2
    page.locator(".meterlib-answer").filter(has=page.locator(".meterlib-name", has_text=UPLOAD_NAME)) \
        .scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot))


def test_jupyterlab_runs_the_notebook_and_answers_an_upload(served, browser, screenshots):
    port = _free_port()
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               "--IdentityProvider.token=", "--ServerApp.password=",
               f"--ServerApp.root_dir={served['notebook'].parent}",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", *_as_root()]
    with _server(command, port, served["root"], "jupyterlab.log") as log, _with_log(log):
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK}", timeout=START_S * 1000)
        _run_all_cells(page, port)
        page.wait_for_selector(".meterlib-upload", state="attached", timeout=RUN_S * 1000)
        page.locator(".meterlib-upload").scroll_into_view_if_needed()
        page.screenshot(path=str(screenshots / "04_lab_panel.png"))
        _upload_and_check(page, served, screenshots / "04_lab_upload.png")
        page.close()


def test_voila_page_answers_an_upload(served, browser, screenshots):
    port = _free_port()
    command = [sys.executable, "-m", "voila", str(served["notebook"]), "--no-browser", f"--port={port}",
               "--Voila.ip=127.0.0.1"]
    with _server(command, port, served["root"], "voila.log") as log, _with_log(log):
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/", timeout=RUN_S * 1000)
        page.wait_for_selector(".meterlib-upload", timeout=RUN_S * 1000)
        assert "upload.observe" not in page.content()  # the code cells are hidden
        _upload_and_check(page, served, screenshots / "04_app_upload.png")
        page.close()
