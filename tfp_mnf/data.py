"""Data sets for the examples and tests: IDX image files, sklearn digits, regression tables.

Images come back as float32 `[N, H, W, 1]` in [0, 1] with int64 labels `[N]`.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian header of
two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then each
dimension as uint32, followed by the data. Images are `idx3` (magic 0x00000803), labels
`idx1` (magic 0x00000801). Files may be gzip-compressed (`.gz`).
"""

import csv
import dataclasses
import gzip
import os
import zlib

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DATASETS = ("mnist", "fashion_mnist", "notmnist")
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}
_UBYTE = 0x08


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        head = f.read(2)
    try:
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt gzip stream ({err}).") from err


def read_idx(path: str, ndim: int) -> np.ndarray:
    """Reads an unsigned-byte IDX file (plain or gzip) into a uint8 array.

    Args:
      path: the file.
      ndim: the number of dimensions the file must have (3 images, 1 labels).

    Returns:
      uint8 array with the file's dimensions.

    Raises:
      FileNotFoundError: if `path` does not exist.
      ValueError: on a bad magic number, a wrong number of dimensions, or a data size that
        does not match the header; the message names the file and what was expected.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file not found: {path}")
    data = _read_bytes(path)
    expected_magic = (_UBYTE << 8) | ndim
    if len(data) < 4:
        raise ValueError(f"{path}: truncated, expected a 4-byte IDX magic number.")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise ValueError(
            f"{path}: bad magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(unsigned-byte IDX with {ndim} dimension(s))."
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(f"{path}: truncated header, expected {header_size} bytes.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header_size + int(np.prod(shape))
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: {kind}, header shape {shape} needs {expected} bytes, file has {len(data)}."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def write_idx(path: str, array: np.ndarray) -> None:
    """Writes a uint8 array as an IDX file, gzip-compressed when `path` ends in `.gz`."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"`array` must be uint8, got {array.dtype}.")
    header = bytes([0, 0, _UBYTE, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def _find_idx(data_dir: str, name: str) -> str:
    candidates = [os.path.join(data_dir, name + suffix) for suffix in (".gz", "")]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"IDX file not found: expected {' or '.join(candidates)}.")


def load_idx_split(data_dir: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Loads `train-*` or `t10k-*` IDX images and labels from a folder.

    Args:
      data_dir: folder with `{train,t10k}-images-idx3-ubyte[.gz]` and `...-labels-idx1-ubyte[.gz]`.
      split: "train" or "test".

    Returns:
      (images float32 `[N, H, W, 1]` in [0, 1], labels int64 `[N]`).
    """
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"`split` must be one of {sorted(_SPLIT_PREFIX)}, got {split!r}.")
    prefix = _SPLIT_PREFIX[split]
    images_path = _find_idx(data_dir, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx(data_dir, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{labels_path}: has {labels.shape[0]} labels, expected {images.shape[0]} "
            f"to match {images_path}."
        )
    return (images[..., None] / np.float32(255.0)).astype(np.float32), labels.astype(np.int64)


def load_image_dataset(
    name: str, split: str = "train", data_dir: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Loads one split of an image data set by name.

    Args:
      name: "mnist" (IDX files in `data_dir`, or the Keras download when `data_dir` is None),
        "fashion_mnist" (`data_dir` defaults to the Debian `dataset-fashion-mnist` folder)
        or "notmnist" (notMNIST in MNIST's IDX format, `data_dir` required).
      split: "train" or "test".
      data_dir: folder with the IDX files.

    Returns:
      (images float32 `[N, 28, 28, 1]` in [0, 1], labels int64 `[N]`).

    Raises:
      FileNotFoundError: if the folder or one of its IDX files is missing (the message names
        the path).
    """
    if name not in DATASETS:
        raise ValueError(f"`name` must be one of {DATASETS}, got {name!r}.")
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"`split` must be one of {sorted(_SPLIT_PREFIX)}, got {split!r}.")
    if data_dir is None:
        if name == "fashion_mnist":
            if not os.path.isdir(FASHION_MNIST_DIR):
                raise FileNotFoundError(
                    f"Fashion-MNIST folder not found: {FASHION_MNIST_DIR} (install Debian's "
                    "dataset-fashion-mnist package, or pass `data_dir`)."
                )
            data_dir = FASHION_MNIST_DIR
        elif name == "mnist":
            return _keras_mnist(split)
        else:
            raise ValueError(f"`data_dir` is required for {name!r}.")
    return load_idx_split(data_dir, split)


def _keras_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST through the Keras downloader (needs internet on first use)."""
    import tf_keras

    train, test = tf_keras.datasets.mnist.load_data()
    images, labels = train if split == "train" else test
    return (images[..., None] / np.float32(255.0)).astype(np.float32), labels.astype(np.int64)


def _split_indices(num: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must lie in (0, 1), got {test_fraction}.")
    order = np.random.default_rng(seed).permutation(num)
    num_test = max(1, int(round(num * test_fraction)))
    return order[num_test:], order[:num_test]


def load_digits_images(
    test_fraction: float = 0.25, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 8x8 digits as images, for fast offline tests.

    Returns:
      ((train images, train labels), (test images, test labels)); images float32
      `[N, 8, 8, 1]` in [0, 1], labels int64.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[..., None] / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    train, test = _split_indices(len(labels), test_fraction, seed)
    return (images[train], labels[train]), (images[test], labels[test])


@dataclasses.dataclass(frozen=True)
class RegressionData:
    """A standardized regression split; `y_mean`/`y_std` map targets back to data units."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    y_mean: float
    y_std: float


def _read_bandgap_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads the band-gap table: `Composition` (dropped), target `Eg (eV)`, numeric features."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"band-gap CSV not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or "Eg (eV)" not in header:
            raise ValueError(f"{path}: expected a header with an 'Eg (eV)' target column.")
        rows = list(reader)
    target_col = header.index("Eg (eV)")
    feature_cols = [i for i, col in enumerate(header) if col not in ("Composition", "Eg (eV)")]
    try:
        table = np.array([[float(row[i]) for i in [target_col, *feature_cols]] for row in rows])
    except (ValueError, IndexError) as err:
        raise ValueError(
            f"{path}: expected numeric values in every non-Composition column."
        ) from err
    return table[:, 1:], table[:, 0]


def load_regression(
    data_path: str | None = None, test_fraction: float = 0.2, seed: int = 0
) -> RegressionData:
    """Loads the band-gap CSV (`data_path`) or scikit-learn's diabetes data, standardized.

    Features and targets are standardized with the training split's mean and std.

    Args:
      data_path: the band-gap CSV of the TF-MNF reference; None for sklearn diabetes.
      test_fraction: held-out fraction, in (0, 1).
      seed: seed of the random split.

    Returns:
      A `RegressionData` with float32 arrays; targets `[N]`.
    """
    if data_path is None:
        from sklearn.datasets import load_diabetes

        features, targets = load_diabetes(return_X_y=True)
    else:
        features, targets = _read_bandgap_csv(data_path)
    train, test = _split_indices(len(targets), test_fraction, seed)
    x_mean, x_std = features[train].mean(axis=0), features[train].std(axis=0)
    x_std = np.where(x_std > 0, x_std, 1.0)
    y_mean, y_std = float(targets[train].mean()), float(targets[train].std())
    x = ((features - x_mean) / x_std).astype(np.float32)
    y = ((targets - y_mean) / y_std).astype(np.float32)
    return RegressionData(x[train], y[train], x[test], y[test], y_mean, y_std)


def toy_regression_1d(
    num_points: int = 40, noise_std: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A 1-D toy problem y = sin(x) + noise with x in two clusters, [-3, -1] and [1, 3].

    The gap between the clusters and the region outside them are where a Bayesian model's
    predictive band should widen.

    Returns:
      (x float32 `[N, 1]`, y float32 `[N]`).
    """
    if num_points < 2:
        raise ValueError(f"`num_points` must be >= 2, got {num_points}.")
    rng = np.random.default_rng(seed)
    half = num_points // 2
    x = np.concatenate([rng.uniform(-3, -1, half), rng.uniform(1, 3, num_points - half)])
    y = np.sin(x) + noise_std * rng.standard_normal(num_points)
    return x[:, None].astype(np.float32), y.astype(np.float32)
