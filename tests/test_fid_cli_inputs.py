"""``invproto-fid`` refuses inputs it does not understand: one stderr line naming the culprit, exit 1, no output.

Every case runs the real command (``python -m invproto.fid``) as a subprocess on
small generated files. The same cases through :func:`invproto.fid.__main__.main`
in this process show that they fail before the Inception network is built.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from invproto.fid import __main__ as cli
from invproto.fid.image_sets import open_images


def good_array(tmp_path: Path) -> Path:
    path = tmp_path / "good.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, size=(4, 8, 8), dtype=np.uint8))
    return path


def png_folder(tmp_path: Path, extra: dict[str, bytes]) -> Path:
    """Three valid 8x8 PNGs and the given extra files."""
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        PIL.Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    for name, data in extra.items():
        (folder / name).write_bytes(data)
    return folder


def npy(name: str, array: np.ndarray):
    def make(tmp_path: Path) -> tuple[Path, str]:
        np.save(tmp_path / name, array)
        return tmp_path / name, str(tmp_path / name)
    return make


def npz(name: str, key: str, array: np.ndarray):
    def make(tmp_path: Path) -> tuple[Path, str]:
        np.savez(tmp_path / name, **{key: array})
        return tmp_path / name, f"{tmp_path / name}['{key}']"
    return make


def corrupt_png(tmp_path: Path) -> tuple[Path, str]:
    folder = png_folder(tmp_path, {"3.png": b"\x89PNG\r\n\x1a\n not really a png"})
    return folder, str(folder / "3.png")


def truncated_png(tmp_path: Path) -> tuple[Path, str]:
    whole = tmp_path / "whole.png"
    PIL.Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(whole)
    folder = png_folder(tmp_path, {"1b.png": whole.read_bytes()[:600]})
    whole.unlink()
    return folder, str(folder / "1b.png")


def garbage_npy(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    return tmp_path / "garbage.npy", str(tmp_path / "garbage.npy")


def with_nan(value: float) -> np.ndarray:
    images = np.zeros((4, 8, 8), dtype=np.float32)
    images[2, 3, 3] = value
    return images


# (id, input maker -> (path given to the command, culprit named in the message), words of the message)
CASES = [
    ("float-0-255", npy("f255.npy", np.full((4, 8, 8, 3), 200.0, np.float32)), ["image 0", "outside [-1, 1]", "127.5"]),
    ("uint16", npy("u16.npy", np.zeros((4, 8, 8), np.uint16)), ["dtype uint16", "uint8"]),
    ("int64", npy("i64.npy", np.zeros((4, 8, 8), np.int64)), ["dtype int64", "uint8"]),
    ("nan", npy("nan.npy", with_nan(np.nan)), ["image 2", "NaN or infinite"]),
    ("inf-in-npz", npz("inf.npz", "samples", with_nan(-np.inf)), ["image 2", "NaN or infinite"]),
    ("5-channels", npy("c5.npy", np.zeros((4, 8, 8, 5), np.uint8)), ["(4, 8, 8, 5)", "RGB (C = 3)"]),
    ("corrupt-png", corrupt_png, ["not a readable image", "replace or remove"]),
    ("truncated-png", truncated_png, ["not a readable image", "replace or remove"]),
    ("garbage-npy", garbage_npy, ["not a readable .npy", "numpy.save"]),
]


def run_command(args: list[Path], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TQDM_DISABLE="1")
    return subprocess.run([sys.executable, "-m", "invproto.fid", *map(str, args), "--device", "cpu"],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.slow  # a Python process per case
@pytest.mark.parametrize("make, words, bad_first", [(*case[1:], True) for case in CASES] + [(*CASES[0][1:], False)],
                         ids=[case[0] for case in CASES] + [f"{CASES[0][0]}-as-second-set"])
def test_the_command_refuses_bad_input_in_one_line(tmp_path, make, words, bad_first):
    bad, culprit = make(tmp_path)
    good = good_array(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    result = run_command([bad, good] if bad_first else [good, bad], cwd=tmp_path)
    lines = result.stderr.splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("invproto-fid: error: "), result.stderr
    assert culprit in lines[0] and all(word in lines[0] for word in words), lines[0]
    assert result.stdout == ""
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("make, words", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_refused_before_the_network_is_built(tmp_path, monkeypatch, capsys, make, words):
    monkeypatch.setattr(cli, "InceptionFeatures", lambda *args: pytest.fail("built the network for bad input"))
    bad, culprit = make(tmp_path)
    assert cli.main([str(bad), str(good_array(tmp_path)), "--device", "cpu"]) == 1
    assert culprit in capsys.readouterr().err


def test_good_inputs_pass_the_checks(tmp_path):
    """Every accepted kind of input: the checks raise nothing."""
    folder = png_folder(tmp_path, {})
    np.save(tmp_path / "unit.npy", np.linspace(-1, 1, 4 * 3 * 8 * 8, dtype=np.float32).reshape(4, 3, 8, 8))
    np.savez(tmp_path / "grey.npz", images=np.zeros((4, 8, 8, 1), np.float64), labels=np.arange(4))
    for location in (folder, good_array(tmp_path), tmp_path / "unit.npy", tmp_path / "grey.npz"):
        images = open_images(str(location))
        images.check(len(images))
