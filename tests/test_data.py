"""Tests of tfp_mnf.data: IDX round trips and errors, sklearn loaders, regression tables."""

import gzip
import os

import numpy as np
import pytest

from tfp_mnf import data

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def _write_split(directory, prefix, images, labels, gz):
    suffix = ".gz" if gz else ""
    data.write_idx(str(directory / f"{prefix}-images-idx3-ubyte{suffix}"), images)
    data.write_idx(str(directory / f"{prefix}-labels-idx1-ubyte{suffix}"), labels)


@pytest.fixture
def idx_arrays():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 5, 4), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = rng.integers(0, 10, size=6, dtype=np.uint8)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, idx_arrays, gz):
    images, labels = idx_arrays
    _write_split(tmp_path, "train", images, labels, gz)
    _write_split(tmp_path, "t10k", images[:2], labels[:2], gz)
    x, y = data.load_idx_split(str(tmp_path), "train")
    assert x.dtype == np.float32 and x.shape == (6, 5, 4, 1)
    assert y.dtype == np.int64
    np.testing.assert_allclose(x[..., 0] * 255, images, atol=1e-4)
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(y, labels)
    x_test, _ = data.load_image_dataset("notmnist", "test", data_dir=str(tmp_path))
    assert x_test.shape == (2, 5, 4, 1)


def test_gzip_detected_by_content_not_name(tmp_path, idx_arrays):
    images, _ = idx_arrays
    path = tmp_path / "plain-images"
    data.write_idx(str(path), images)
    gz_path = tmp_path / "zipped-images"
    gz_path.write_bytes(gzip.compress(path.read_bytes()))
    np.testing.assert_array_equal(data.read_idx(str(gz_path), ndim=3), images)


def test_missing_file_names_both_candidates(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\.gz or .*ubyte"):
        data.load_idx_split(str(tmp_path), "train")


def test_bad_magic(tmp_path, idx_arrays):
    images, labels = idx_arrays
    # Labels written where images are expected: an idx1 magic number in an idx3 file.
    data.write_idx(str(tmp_path / "train-images-idx3-ubyte"), labels)
    data.write_idx(str(tmp_path / "train-labels-idx1-ubyte"), labels)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: bad magic.*0x00000803"):
        data.load_idx_split(str(tmp_path), "train")


def test_truncated_and_trailing_bytes(tmp_path, idx_arrays):
    images, _ = idx_arrays
    path = tmp_path / "images"
    data.write_idx(str(path), images)
    raw = path.read_bytes()
    path.write_bytes(raw[:-7])
    with pytest.raises(ValueError, match=r"images: truncated.*\(6, 5, 4\)"):
        data.read_idx(str(path), ndim=3)
    path.write_bytes(raw + b"\0")
    with pytest.raises(ValueError, match="trailing bytes"):
        data.read_idx(str(path), ndim=3)
    path.write_bytes(raw[:10])
    with pytest.raises(ValueError, match="truncated header"):
        data.read_idx(str(path), ndim=3)


def test_truncated_gzip(tmp_path, idx_arrays):
    images, _ = idx_arrays
    path = tmp_path / "images.gz"
    data.write_idx(str(path), images)
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(ValueError, match="images.gz: corrupt gzip"):
        data.read_idx(str(path), ndim=3)


def test_count_mismatch(tmp_path, idx_arrays):
    images, labels = idx_arrays
    _write_split(tmp_path, "train", images, labels[:5], gz=True)
    with pytest.raises(ValueError, match=r"labels-idx1-ubyte.gz: has 5 labels, expected 6"):
        data.load_idx_split(str(tmp_path), "train")


def test_argument_validation(tmp_path):
    with pytest.raises(ValueError, match="split"):
        data.load_idx_split(str(tmp_path), "valid")
    with pytest.raises(ValueError, match="name"):
        data.load_image_dataset("cifar10", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="data_dir"):
        data.load_image_dataset("notmnist")
    with pytest.raises(TypeError, match="uint8"):
        data.write_idx(str(tmp_path / "x"), np.zeros(3, dtype=np.int32))


def test_fashion_mnist_default_dir(monkeypatch, tmp_path, idx_arrays):
    images, labels = idx_arrays
    _write_split(tmp_path, "t10k", images, labels, gz=True)
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", str(tmp_path))
    x, y = data.load_image_dataset("fashion_mnist", "test")
    assert x.shape == (6, 5, 4, 1) and y.shape == (6,)


def test_fashion_mnist_missing_default_dir(monkeypatch, tmp_path):
    missing = str(tmp_path / "no-fashion")
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", missing)
    with pytest.raises(FileNotFoundError, match=r"no-fashion \(install Debian's dataset-fashion"):
        data.load_image_dataset("fashion_mnist", "train")


def test_digits_images():
    (x_train, y_train), (x_test, y_test) = data.load_digits_images(test_fraction=0.25, seed=1)
    assert x_train.shape[1:] == (8, 8, 1) and x_test.shape[1:] == (8, 8, 1)
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == 449
    assert 0.0 <= x_train.min() and x_train.max() == 1.0
    assert set(np.unique(y_train)) == set(range(10)) and y_test.dtype == np.int64


def test_diabetes_standardized_split():
    split = data.load_regression(test_fraction=0.2, seed=3)
    assert split.x_train.shape == (354, 10) and split.x_test.shape == (88, 10)
    np.testing.assert_allclose(split.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(split.x_train.std(axis=0), 1.0, atol=1e-4)
    assert split.y_train.std() == pytest.approx(1.0, abs=1e-4)
    assert split.y_std > 10  # diabetes targets are in the tens to hundreds
    other = data.load_regression(test_fraction=0.2, seed=4)
    assert not np.array_equal(split.y_test, other.y_test)


def test_bandgap_csv(tmp_path):
    path = tmp_path / "bandgaps.csv"
    path.write_text(
        "Composition,Eg (eV),1,2,3\n"
        "GaAs,1.4,1.0,5.0,7.0\n"
        "Si,1.1,2.0,5.0,8.0\n"
        "C,5.5,3.0,5.0,9.0\n"
        "Ge,0.7,4.0,5.0,10.0\n"
    )
    split = data.load_regression(str(path), test_fraction=0.25, seed=0)
    assert split.x_train.shape == (3, 3) and split.x_test.shape == (1, 3)
    assert np.all(np.isfinite(split.x_train))  # the constant column is not divided by 0
    targets = np.concatenate([split.y_train, split.y_test]) * split.y_std + split.y_mean
    np.testing.assert_allclose(np.sort(targets), [0.7, 1.1, 1.4, 5.5], rtol=1e-5)


def test_bandgap_csv_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        data.load_regression(str(tmp_path / "nope.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("Composition,target\nSi,1.0\n")
    with pytest.raises(ValueError, match="Eg"):
        data.load_regression(str(bad))
    bad.write_text("Composition,Eg (eV),1\nSi,1.0,abc\n")
    with pytest.raises(ValueError, match="numeric"):
        data.load_regression(str(bad))


def test_toy_regression():
    x, y = data.toy_regression_1d(num_points=30, seed=0)
    assert x.shape == (30, 1) and y.shape == (30,)
    assert np.all(np.abs(x) >= 1) and np.all(np.abs(x) <= 3)
    assert np.abs(y - np.sin(x[:, 0])).max() < 0.5


@pytest.mark.skipif(
    not os.path.isdir(os.path.join(SHARED, "mnist-small")),
    reason="offline MNIST copy ../shared/data/mnist-small not present",
)
def test_offline_mnist_small():
    x, y = data.load_image_dataset("mnist", "test", data_dir=os.path.join(SHARED, "mnist-small"))
    assert x.shape == (2000, 28, 28, 1) and y.shape == (2000,)
    assert set(np.unique(y)) == set(range(10))
