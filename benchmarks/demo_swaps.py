"""Minutes from a fresh clone to decoded factor swaps in the demo, on this machine's CPU.

What a new user on a laptop does after ``make install``, timed end to end in a
fresh ``git clone`` of this repository (its ``.venv`` is this one, linked: the
install is not timed), with the commands the README gives:

1. ``edflow -b configs/sprites_ae_cpu.yaml -t``   -- the Sprites autoencoder;
2. ``edflow -b configs/sprites_ae_diin.yaml -t``  -- a dIIN on its code (first stage and
   factor sizes from step 1's run, no editing);
3. ``streamlit run invproto/demo/app.py``         -- opened in headless Chromium on the
   dIIN run, until its "Factor swaps" tab shows the decoded swaps.

Figure (``benchmarks/results/``): ``demo.cpu_minutes_to_swaps``, target <= 15,
with each step's minutes in the record; the page's screenshot goes beside it
(``demo.cpu_minutes_to_swaps.png``).

    .venv/bin/python -m benchmarks.demo_swaps        (~8 min on a 2-core CPU)
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.demo_browser import chromium_driver, not_blank, page_finished, rendered_images, serve, visible_panel
from benchmarks.results_io import RESULTS_DIR, write_result
from benchmarks.runs import EDFLOW, REPO

N_SWAPS = 3  # factor swaps the view decodes per direction: one per factor (shape, colour, residual)


def timed(command: list[str], cwd: Path) -> float:
    """Run ``command`` in ``cwd`` (it must succeed); its wall minutes."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return (time.perf_counter() - start) / 60


def swaps_on_screen(clone: Path, work: Path) -> tuple[float, bytes]:
    """Serve the demo from the clone, open the dIIN run; minutes until its factor swaps are decoded on the page,
    and the screenshot of that tab."""
    from selenium.webdriver.support.ui import WebDriverWait

    [diin] = sorted((clone / "logs").glob("*_sprites_ae_diin"))
    start = time.perf_counter()
    with serve(clone / "logs", work / "streamlit.log", cwd=clone) as (url, _), \
            chromium_driver(work / "chromium-profile") as driver:
        driver.get(f"{url}/?run={diin.name}")
        # A and B, both decoded, then A with each factor of B and B with each factor of A
        WebDriverWait(driver, 300, poll_frequency=0.5).until(
            lambda d: page_finished(d) and len(rendered_images(visible_panel(d))) >= 2 + 2 + 2 * N_SWAPS)
        minutes = (time.perf_counter() - start) / 60
        return minutes, visible_panel(driver).screenshot_as_png


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="invproto_swaps_") as scratch:
        work = Path(scratch)
        clone = work / "invproto"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        (clone / ".venv").symlink_to(REPO / ".venv", target_is_directory=True)  # `make install`, not timed
        os.environ["PYTHONPATH"] = str(clone)  # the clone's code, in edflow and in the demo server
        start = time.perf_counter()
        autoencoder = timed([EDFLOW, "-b", "configs/sprites_ae_cpu.yaml", "-t"], clone)
        diin = timed([EDFLOW, "-b", "configs/sprites_ae_diin.yaml", "-t"], clone)
        demo, screenshot = swaps_on_screen(clone, work)
        total = (time.perf_counter() - start) / 60
    if not not_blank(screenshot):
        raise RuntimeError("the factor-swap tab's screenshot is blank")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "demo.cpu_minutes_to_swaps.png").write_bytes(screenshot)
    write_result("demo.cpu_minutes_to_swaps", round(total, 2), "minutes", 15, total * 60,
                 autoencoder_minutes=round(autoencoder, 2), diin_minutes=round(diin, 2),
                 demo_minutes=round(demo, 2), steps=["edflow -b configs/sprites_ae_cpu.yaml -t",
                                                    "edflow -b configs/sprites_ae_diin.yaml -t",
                                                    "streamlit run invproto/demo/app.py (tab Factor swaps)"])


if __name__ == "__main__":
    main()
