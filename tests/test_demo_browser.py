"""The demo as a person sees it: ``streamlit run`` serves the page on 127.0.0.1 and Debian's headless
Chromium (driven by Selenium through ``/usr/bin/chromedriver``) loads it: the run list, and every view
(tab) of a run of every kind, opened by its address (``?run=<name>``), the explain views with an upload.

Chromium comes from ``tools/install_browser.sh`` (run by ``make test``). The
screenshots are kept in ``$INVPROTO_TEST_ARTIFACTS`` (default ``tests/artifacts/``,
git-ignored): ``demo_page.png`` and ``demo_views/<kind>_<tab>.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import psutil
import pytest
from edflow_runner import REPO
from test_demo import demo_logs, first_stage_logs, run_named  # noqa: F401 -- the tiny trained runs (session fixtures)

from benchmarks.demo_browser import (
    CHROMEDRIVER,
    CHROMIUM,
    chromium_driver,
    click_tab,
    drawn,
    not_blank,
    page_finished,
    rendered_images,
    serve,
    tab_titles,
    visible_panel,
)
from invproto.demo.runs import find_runs
from invproto.demo.views import VIEWS

ARTIFACTS = Path(os.environ.get("INVPROTO_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason=f"{CHROMIUM} and {CHROMEDRIVER} are not installed; `bash tools/install_browser.sh` "
           f"(run by `make test`) installs Debian's chromium and chromium-driver")


@pytest.fixture
def logs(first_stage_logs, tmp_path):  # noqa: F811 -- the imported fixture
    """``logs/`` with the tiny autoencoder and classifier runs, the autoencoder newest (so the page opens on it)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for name, kind in (("2000-01-02T00-00-00_ae", "ae"), ("2000-01-01T00-00-00_clf", "clf")):
        (logs / name).symlink_to(first_stage_logs / run_named(first_stage_logs, kind), target_is_directory=True)
    return logs


@pytest.fixture
def served_demo(logs, tmp_path):
    with serve(logs, tmp_path / "streamlit.log") as served:
        yield served


@pytest.fixture
def chromium(tmp_path):
    with chromium_driver(tmp_path / "chromium-profile") as driver:
        yield driver


@pytest.mark.slow
def test_the_page_binds_to_localhost_only(served_demo):
    _, process = served_demo
    listening = [c.laddr.ip for c in psutil.Process(process.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and set(listening) <= {"127.0.0.1"}, listening


@pytest.mark.slow
def test_chromium_renders_the_run_list_and_images(served_demo, chromium, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = served_demo
    chromium.get(url)

    def finished(driver) -> bool:
        """The script ran to its end (Streamlit's "running" status widget is gone) and its pictures loaded."""
        running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        run_list = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stTable"]')
        return not running and bool(run_list) and bool(rendered_images(driver))

    WebDriverWait(chromium, 90, poll_frequency=0.5).until(finished)
    screenshot = tmp_path / "demo_page.png"
    assert chromium.save_screenshot(str(screenshot))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, ARTIFACTS / "demo_page.png")

    run_list = chromium.find_element(By.CSS_SELECTOR, '[data-testid="stTable"]').text.split()
    assert {"2000-01-02T00-00-00_ae", "2000-01-01T00-00-00_clf", "autoencoder", "classifier"} <= set(run_list)
    assert not chromium.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert len(rendered_images(chromium)) >= 2 * 8  # the autoencoder's 8 inputs and 8 reconstructions
    assert screenshot.stat().st_size > 10_000


# --- every view of every run kind ------------------------------------------------------------------

def upload_picture(driver, panel, tmp_path: Path) -> None:
    """Choose "upload a picture" in the panel and upload a PNG (a colourful 32 px pattern)."""
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    picture = tmp_path / "upload.png"
    pixels = ((np.indices((32, 32)).sum(0) % 16) * 16).astype(np.uint8)
    Image.fromarray(np.stack([pixels, pixels[::-1], pixels.T], -1)).save(picture)
    [option] = [label for label in panel.find_elements(By.CSS_SELECTOR, "label")
                if label.text.strip() == "upload a picture"]
    option.click()
    WebDriverWait(driver, 60).until(lambda d: visible_panel(d).find_elements(By.CSS_SELECTOR, 'input[type="file"]'))
    visible_panel(driver).find_element(By.CSS_SELECTOR, 'input[type="file"]').send_keys(str(picture))
    WebDriverWait(driver, 90, poll_frequency=0.5).until(
        lambda d: page_finished(d) and "uploaded, as the model sees it" in visible_panel(d).text)


@pytest.mark.slow
def test_chromium_shows_every_view_of_every_run_kind(demo_logs, chromium, tmp_path):  # noqa: F811
    """Each run of the tiny set (one per kind) opened by its address, each tab clicked; the explain views with an
    uploaded picture. Every view draws pictures or a chart, no error, and its screenshot is not blank."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    runs = find_runs(demo_logs)
    assert {run.kind for run in runs} == set(VIEWS)  # the fixture has a run of every kind
    shots = ARTIFACTS / "demo_views"
    shots.mkdir(parents=True, exist_ok=True)
    seen = []
    with serve(demo_logs, tmp_path / "streamlit.log") as (url, _):
        for run in runs:
            chromium.get(f"{url}/?run={run.name}")
            WebDriverWait(chromium, 120, poll_frequency=0.5).until(page_finished)
            titles = tab_titles(chromium)
            assert titles == [title for title, _ in VIEWS[run.kind]] + ["Metrics"], run.name
            for title in titles:
                click_tab(chromium, title)
                WebDriverWait(chromium, 60, poll_frequency=0.5).until(lambda d: drawn(visible_panel(d)))
                if title == "Explain an image":
                    upload_picture(chromium, visible_panel(chromium), tmp_path)
                    assert len(rendered_images(visible_panel(chromium))) >= 1
                panel = visible_panel(chromium)
                assert not chromium.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]'), (run.name, title)
                assert not panel.find_elements(By.CSS_SELECTOR, '[data-testid="stAlertContentError"]'), (
                    run.name, title, panel.text[:500])
                png = panel.screenshot_as_png
                (shots / f"{run.kind}_{title.replace(' ', '_')}.png").write_bytes(png)
                assert not_blank(png), (run.name, title)
                seen.append((run.kind, title))
    assert seen == [(run.kind, title) for run in runs for title in [t for t, _ in VIEWS[run.kind]] + ["Metrics"]]


# --- the invproto-demo command -----------------------------------------------------------------------

def test_the_demo_command_adds_safe_settings_unless_given():
    from invproto.demo.__main__ import APP, streamlit_command

    command = streamlit_command(["--logs", "runs", "--server.port", "8600"])
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4] == str(APP)
    assert {"--server.address=127.0.0.1", "--browser.gatherUsageStats=false", "--server.port"} <= set(command)
    assert command[command.index("--") + 1:] == ["--logs", str(Path("runs").resolve()), "--device", "cpu"]
    shared = streamlit_command(["--server.address", "0.0.0.0"])  # on purpose: the user's choice wins
    assert "--server.address=127.0.0.1" not in shared and "0.0.0.0" in shared


@pytest.mark.slow
def test_the_demo_command_serves_localhost_only_from_any_directory(logs, tmp_path):
    import subprocess
    import sys

    from benchmarks.demo_browser import free_port, wait_until_healthy

    port = free_port()
    elsewhere = tmp_path / "elsewhere"  # no .streamlit/config.toml here
    elsewhere.mkdir()
    with open(tmp_path / "demo.log", "w") as log:
        process = subprocess.Popen([str(Path(sys.executable).with_name("invproto-demo")), "--logs", str(logs),
                                    "--server.port", str(port), "--server.headless", "true"],
                                   cwd=elsewhere, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_healthy(f"http://127.0.0.1:{port}", process)
            listening = [c.laddr.ip for c in psutil.Process(process.pid).net_connections(kind="inet")
                         if c.status == psutil.CONN_LISTEN]
            assert listening and set(listening) <= {"127.0.0.1"}, listening
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert "usage statistics" not in (tmp_path / "demo.log").read_text()
