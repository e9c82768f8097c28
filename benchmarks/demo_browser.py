"""The demo in a real browser: ``streamlit run`` on a free local port and Debian's headless Chromium.

Shared by the browser tests (``tests/test_demo_browser.py``) and the benchmark
that times a new user's way to factor swaps (``benchmarks/demo_swaps.py``).
Chromium and ChromeDriver come from ``tools/install_browser.sh`` (Debian's
``chromium`` and ``chromium-driver``); Selenium drives them.
"""

from __future__ import annotations

import contextlib
import io
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless on a machine without a network: no GPU, no QUIC, and none of Chromium's own background connections.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1400"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError("streamlit exited before serving the page")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout} s")


@contextlib.contextmanager
def serve(logs: Path, log_file: Path, cwd: Path = REPO):
    """The demo on ``logs`` served by ``streamlit run`` from ``cwd`` (a repository root, with its
    .streamlit/config.toml) on a free port: ``(url, process)``; its output goes to ``log_file``."""
    port = free_port()
    with open(log_file, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "invproto/demo/app.py", "--server.port", str(port),
             "--server.headless", "true", "--", "--logs", str(logs)],
            cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_healthy(url, process)
            yield url, process
        finally:
            process.terminate()
            process.wait(timeout=30)


@contextlib.contextmanager
def chromium_driver(profile: Path):
    """A headless Chromium (Selenium ``webdriver.Chrome``) with its profile in ``profile``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def rendered_images(element) -> list:
    """The pictures inside ``element`` (a page or an element) that the browser has decoded."""
    from selenium.webdriver.common.by import By

    images = element.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"] img')
    return [image for image in images if image.parent.execute_script("return arguments[0].naturalWidth", image) > 0]


def page_finished(driver) -> bool:
    """The script ran to its end: Streamlit's "running" status widget is gone and the run's tabs are drawn."""
    from selenium.webdriver.common.by import By

    return (not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
            and bool(driver.find_elements(By.CSS_SELECTOR, '[data-testid="stTab"]')))


def tab_titles(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [tab.text for tab in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stTab"]')]


def click_tab(driver, title: str) -> None:
    from selenium.webdriver.common.by import By

    [tab] = [tab for tab in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stTab"]') if tab.text == title]
    tab.click()


def visible_panel(driver):
    """The tab panel on show."""
    from selenium.webdriver.common.by import By

    return next(panel for panel in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stTabPanel"]')
                if panel.is_displayed())


def drawn(panel) -> bool:
    """Pictures decoded, or a chart drawn (the metrics), in ``panel``."""
    from selenium.webdriver.common.by import By

    charts = panel.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"] canvas, '
                                                  '[data-testid="stVegaLiteChart"] svg')
    return bool(rendered_images(panel)) or bool(charts)


def not_blank(png: bytes) -> bool:
    """A screenshot with something on it: many grey levels, not one flat colour."""
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    return np.unique(grey).size > 16
