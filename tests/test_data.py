"""sw.data: idx files, Fashion-MNIST, ImageFolder, synthetic, normalisation."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from sw import data
from sw.data import DatasetError, load_dataset


def write_idx(path: Path, array: np.ndarray, gz: bool = True):
    body = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    (gzip.open if gz else open)(path, "wb").write(body)


@pytest.fixture
def tiny_fmnist(tmp_path):
    rng = np.random.default_rng(1)
    sets = {}
    for split, (img, lbl), n, gz in (("train", data.FASHION_MNIST_FILES["train"], 30, True),
                                      ("test", data.FASHION_MNIST_FILES["test"], 12, False)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(tmp_path / (img + (".gz" if gz else "")), x, gz)
        write_idx(tmp_path / (lbl + (".gz" if gz else "")), y, gz)
        sets[split] = (x, y)
    return tmp_path, sets


def test_fashion_mnist_from_idx_files(tiny_fmnist):
    folder, sets = tiny_fmnist
    for split in ("train", "test"):  # .gz and plain files
        x, y = load_dataset("fashion-mnist", split, data_dir=folder)
        assert x.dtype == np.uint8 and x.shape == (len(sets[split][0]), 1, 28, 28)
        assert y.dtype == np.int64
        assert np.array_equal(x[:, 0], sets[split][0]) and np.array_equal(y, sets[split][1])


def test_resize_and_channels(tiny_fmnist):
    folder, sets = tiny_fmnist
    x, _ = load_dataset("fashion-mnist", "test", data_dir=folder, img_size=14, in_chans=3)
    assert x.shape == (12, 3, 14, 14)
    assert np.array_equal(x[:, 0], x[:, 2])
    # 2x bilinear downscale of a constant image stays constant
    const = np.full((1, 1, 28, 28), 77, np.uint8)
    assert np.all(data.fit_images(const, 14) == 77)


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist.*--data-dir"):
        load_dataset("fashion-mnist", "train", data_dir=tmp_path)


@pytest.mark.parametrize("payload, message", [
    (b"\x01\x02\x08\x01", "bad magic"),
    (bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 1) + b"\0\0\0\0", "not unsigned byte"),
    (bytes([0, 0, 8, 2]) + struct.pack(">II", 3, 3) + b"\0" * 8, "header says 9"),
    (bytes([0, 0, 8, 3]) + b"\0\0", "truncated"),
])
def test_bad_idx_files(tmp_path, payload, message):
    p = tmp_path / "bad-idx"
    p.write_bytes(payload)
    with pytest.raises(DatasetError, match=message):
        data.read_idx(p)


@pytest.mark.skipif(not Path(data.FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz").exists(),
                    reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split():
    x, y = load_dataset("fashion-mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert np.array_equal(np.bincount(y), np.full(10, 1000))  # the test split is balanced


def _png(path: Path, value: int, size=(10, 8), mode="L"):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, value, value)).save(path)


def test_imagefolder_with_split_folders(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for c, value in (("cat", 10), ("dog", 200)):
            for i in range(n):
                _png(tmp_path / split / c / f"{i}.png", value, mode="RGB" if i == 0 else "L")
    x, y = load_dataset(f"imagefolder:{tmp_path}", "train", img_size=16, in_chans=1)
    assert x.shape == (6, 1, 16, 16) and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.all(x[y == 0] == 10) and np.all(x[y == 1] == 200)
    x, y = load_dataset("imagefolder", "test", data_dir=tmp_path, img_size=16, in_chans=3)
    assert x.shape == (4, 3, 16, 16)
    assert data.num_classes_of(f"imagefolder:{tmp_path}") == 2


def test_imagefolder_without_splits_holds_out_every_tenth(tmp_path):
    for i in range(20):
        _png(tmp_path / "a" / f"{i:02d}.jpg", 5)
    tr, _ = load_dataset(f"imagefolder:{tmp_path}", "train", img_size=8)
    te, _ = load_dataset(f"imagefolder:{tmp_path}", "test", img_size=8)
    assert len(tr) == 18 and len(te) == 2


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}", "train")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DatasetError, match="no class subfolders"):
        load_dataset(f"imagefolder:{tmp_path}", "train")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="cannot read image"):
        load_dataset(f"imagefolder:{tmp_path}", "train")


def test_unknown_dataset_and_split():
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("cifar", "train")
    with pytest.raises(DatasetError, match="unknown split"):
        load_dataset("synthetic", "val")


def test_synthetic_is_deterministic_and_learnable_by_nearest_template():
    x1, y1 = load_dataset("synthetic", "train")
    x2, y2 = load_dataset("synthetic", "train")
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert x1.shape == (1024, 1, 28, 28) and x1.dtype == np.uint8
    xt, yt = load_dataset("synthetic", "test", img_size=12, in_chans=3)
    assert xt.shape == (256, 3, 12, 12)
    # class means of train classify the test split almost perfectly (the data carries the label)
    xt, yt = load_dataset("synthetic", "test")
    means = np.stack([x1[y1 == c].astype(np.float32).mean(0) for c in range(10)])
    d = ((xt[:, None].astype(np.float32) - means[None]) ** 2).sum(axis=(2, 3, 4))
    assert (d.argmin(1) == yt).mean() > 0.95


def test_normalize_matches_formula():
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 4), dtype=np.uint8)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    out = data.normalize(x, mean, std)
    ref = (x / 255.0 - np.array(mean)[None, :, None, None]) / np.array(std)[None, :, None, None]
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        data.normalize(x, (0.1, 0.2), (0.3, 0.4))
