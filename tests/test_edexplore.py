"""``edexplore --dataset <path>`` renders examples (edflow's explorer on today's streamlit).

``edexplore`` runs ``streamlit run edflow/explore.py -- <args>``. Each test runs
that script with streamlit's ``AppTest`` in a fresh interpreter which, like
``streamlit run``, imports streamlit before the script imports edflow -- the
moment :func:`invproto.compat.patch_streamlit` restores ``st.cache``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import edflow
import numpy as np
import pytest
from edflow.data.dataset_mixin import DatasetMixin

from invproto.compat import patch_streamlit

EXPLORE = Path(edflow.__file__).parent / "explore.py"
TESTS = Path(__file__).resolve().parent

RUNNER = """
import json, sys
from streamlit.testing.v1 import AppTest
script, *args = sys.argv[1:]
sys.argv = [script, *args]  # what `streamlit run script -- args` gives the script
app = AppTest.from_file(script, default_timeout=120)
app.run()
print(json.dumps({"exceptions": [e.message for e in app.exception], "titles": [t.value for t in app.title],
                  "images": len(app.get("image"))}))
"""


class TinyImages(DatasetMixin):
    """Three 8x8 gray images, independent of invproto's config handling."""

    def __init__(self, config):
        self.config = config

    def __len__(self):
        return 3

    def get_example(self, i):
        return {"image": np.full((8, 8, 3), i / 3 - 0.5, np.float32), "class": i}


def explore(*args: str) -> dict:
    """Run edflow's explorer with ``args`` (as given to ``edexplore``); return what it showed."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", RUNNER, str(EXPLORE), *args], capture_output=True,
                            text=True, timeout=300, cwd=TESTS.parent, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_st_cache_alias_caches_like_the_removed_api():
    import streamlit

    patch_streamlit()
    calls = []

    @streamlit.cache(persist=False, allow_output_mutation=True)
    def build(config):
        calls.append(config)
        return object()

    assert build({"a": 1}) is build({"a": 1}) and len(calls) == 1
    streamlit.cache_resource.clear()


@pytest.mark.slow
def test_explorer_renders_a_plain_edflow_dataset():
    shown = explore("--dataset", "test_edexplore.TinyImages")
    assert shown == {"exceptions": [], "titles": ["Dataset Explorer: TinyImages"], "images": 1}


@pytest.mark.slow
@pytest.mark.parametrize("args, title, images", [
    (["--dataset", "invproto.data.SpritesTest", "--dataset_params/n_test", "10"], "SpritesTest", 1),
    (["--dataset", "invproto.data.ColorfulMNISTTest", "--data/root", "{shared}"], "ColorfulMNISTTest", 2),
], ids=["sprites", "colorful-mnist-pairs"])
def test_explorer_renders_invproto_datasets(args, title, images, shared_data):
    shown = explore(*(arg.format(shared=shared_data) for arg in args))
    assert shown == {"exceptions": [], "titles": [f"Dataset Explorer: {title}"], "images": images}
