"""Datasets as uint8 NCHW numpy arrays: Fashion-MNIST (idx files), ImageFolder, synthetic.

``load_dataset(name, split, data_dir=None, img_size=None, in_chans=None)`` is the one entry
point (the training CLI and the integer reference both use it); ``normalize`` turns a uint8
batch into the float input of a model with its mean / std.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SPLITS = ("train", "test")


class DatasetError(ValueError):
    """A dataset is missing or malformed; the message says what to do."""


# --------------------------------------------------------------------------- idx files
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (optionally .gz): ubyte data with its dimensions, validated."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"{path}: cannot read idx file ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path}: not an idx file (bad magic)")
    if data[2] != 0x08:
        raise DatasetError(f"{path}: idx type 0x{data[2]:02x} is not unsigned byte")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: truncated idx header")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    size = int(np.prod(dims, dtype=np.int64))
    body = data[4 + 4 * ndim:]
    if len(body) != size:
        raise DatasetError(f"{path}: idx body has {len(body)} bytes, header says {size}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _find(dir_: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (dir_ / name).is_file():
            return dir_ / name
    return None


def load_fashion_mnist(split: str, data_dir: str | os.PathLike | None = None):
    """Fashion-MNIST as ``(uint8 [N, 1, 28, 28], int64 [N])`` from idx(.gz) files."""
    dir_ = Path(data_dir or FASHION_MNIST_DIR)
    img_stem, lbl_stem = FASHION_MNIST_FILES[split]
    img_path, lbl_path = _find(dir_, img_stem), _find(dir_, lbl_stem)
    if img_path is None or lbl_path is None:
        raise DatasetError(
            f"Fashion-MNIST {split} files ({img_stem}[.gz], {lbl_stem}[.gz]) not found in {dir_}: "
            f"install them with `sudo apt-get install dataset-fashion-mnist` or pass --data-dir DIR")
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{dir_}: image/label shapes {images.shape} / {labels.shape} do not match")
    return images[:, None].copy(), labels.astype(np.int64)


# --------------------------------------------------------------------------- ImageFolder
def _pil():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow comes with matplotlib
        raise DatasetError("ImageFolder datasets need Pillow: pip install pillow") from None
    return Image


def _image_files(root: Path):
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    items = [(f, i) for i, c in enumerate(classes) for f in sorted((root / c).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    return classes, items


def imagefolder_classes(path: str | os.PathLike) -> list[str]:
    """Class names (sorted subfolder names) of an ImageFolder dataset."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"ImageFolder {root} does not exist or is not a folder")
    split_root = root / "train" if (root / "train").is_dir() else root
    classes = _image_files(split_root)[0]
    if not classes:
        raise DatasetError(f"ImageFolder {split_root}: no class subfolders")
    return classes


def load_imagefolder(path: str | os.PathLike, split: str, img_size: int | None = None,
                     in_chans: int | None = None):
    """Images in class subfolders (PNG/JPEG), torchvision ImageFolder layout.

    ``PATH/train/<class>/*`` and ``PATH/test/<class>/*`` (``val`` is accepted for test); a
    folder without those takes every 10th file (sorted) of each class as the test split.
    Images are resized (bilinear) to ``img_size`` and converted to ``in_chans`` (1: L, 3: RGB);
    without ``img_size`` all images must have one size.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"ImageFolder {root} does not exist or is not a folder")
    named = {"train": ["train"], "test": ["test", "val"]}[split]
    split_root = next((root / n for n in named if (root / n).is_dir()), None)
    holdout = split_root is None
    classes, items = _image_files(split_root or root)
    if not items:
        raise DatasetError(f"ImageFolder {split_root or root}: no class subfolders with "
                           f"{'/'.join(IMAGE_SUFFIXES)} images")
    if holdout:
        counters: dict[int, int] = {}
        chosen = []
        for f, c in items:
            k = counters.get(c, 0)
            counters[c] = k + 1
            if (k % 10 == 9) == (split == "test"):
                chosen.append((f, c))
        items = chosen
    Image = _pil()
    mode = {1: "L", 3: "RGB", None: None}.get(in_chans)
    if in_chans not in (1, 3, None):
        raise DatasetError(f"ImageFolder images can be 1 or 3 channels, not {in_chans}")
    arrays = []
    for f, _ in items:
        try:
            with Image.open(f) as im:
                im = im.convert(mode or ("L" if im.mode in ("L", "1", "I", "I;16") else "RGB"))
                if img_size:
                    im = im.resize((img_size, img_size), Image.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except OSError as e:
            raise DatasetError(f"{f}: cannot read image ({e})") from None
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise DatasetError(f"ImageFolder {root}: images differ in size/channels {sorted(shapes)[:3]}; "
                           f"give an image size to resize them")
    return np.stack(arrays), np.array([c for _, c in items], dtype=np.int64)


# --------------------------------------------------------------------------- synthetic
def load_synthetic(split: str, n: int | None = None, img_size: int = 28, in_chans: int = 1,
                   num_classes: int = 10, seed: int = 0):
    """A small, easily learnt dataset for tests: one random 4x4 black/white block pattern per
    class (blocks of img_size/4 pixels), plus Gaussian noise (sigma 40).

    Deterministic for a given seed; train and test share the patterns, not the noise.
    Defaults: 1024 train / 256 test images.
    """
    n = n or (1024 if split == "train" else 256)
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 2, size=(num_classes, in_chans, 4, 4)) * 200.0 + 28.0
    reps = -(-img_size // 4)
    templates = np.kron(coarse, np.ones((1, 1, reps, reps)))[:, :, :img_size, :img_size]
    rng = np.random.default_rng(seed + (1 if split == "train" else 2))
    labels = rng.integers(0, num_classes, size=n).astype(np.int64)
    noise = rng.normal(0, 40, size=(n, in_chans, img_size, img_size))
    images = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels


# --------------------------------------------------------------------------- entry points
def fit_images(images: np.ndarray, img_size: int | None = None, in_chans: int | None = None):
    """Resize (bilinear, PIL) and convert channels (1 <-> 3) of a uint8 NCHW batch if needed."""
    n, c, h, w = images.shape
    if in_chans and c != in_chans:
        if c == 1 and in_chans == 3:
            images = np.repeat(images, 3, axis=1)
        elif c == 3 and in_chans == 1:  # ITU-R 601 luma, as PIL's "L"
            luma = images[:, 0] * 0.299 + images[:, 1] * 0.587 + images[:, 2] * 0.114
            images = np.round(luma)[:, None].clip(0, 255).astype(np.uint8)
        else:
            raise DatasetError(f"cannot convert {c}-channel images to {in_chans} channels")
    if img_size and (h, w) != (img_size, img_size):
        Image = _pil()
        out = np.empty(images.shape[:2] + (img_size, img_size), dtype=np.uint8)
        for i in range(images.shape[0]):
            for ch in range(images.shape[1]):
                im = Image.fromarray(images[i, ch]).resize((img_size, img_size), Image.BILINEAR)
                out[i, ch] = np.asarray(im)
        images = out
    return images


def load_dataset(name: str, split: str, data_dir: str | os.PathLike | None = None,
                 img_size: int | None = None, in_chans: int | None = None):
    """``(images uint8 [N, C, H, W], labels int64 [N])`` of a dataset split.

    name: ``fashion-mnist`` (idx files in ``data_dir`` or /usr/share/datasets/fashion-mnist),
    ``imagefolder:PATH`` (or ``imagefolder`` with ``data_dir=PATH``) or ``synthetic``.
    split: ``train`` or ``test``. With ``img_size`` / ``in_chans`` the images are resized and
    converted to what a model takes. Raises DatasetError with a hint when data is missing.
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} (train | test)")
    if name == "fashion-mnist":
        images, labels = load_fashion_mnist(split, data_dir)
    elif name == "synthetic":
        images, labels = load_synthetic(split, img_size=img_size or 28, in_chans=in_chans or 1)
    elif name == "imagefolder" or name.startswith("imagefolder:"):
        path = name.partition(":")[2] or data_dir
        if not path:
            raise DatasetError("imagefolder needs a path: --dataset imagefolder:PATH")
        return load_imagefolder(path, split, img_size, in_chans)
    else:
        raise DatasetError(f"unknown dataset {name!r} (fashion-mnist | imagefolder:PATH | synthetic)")
    return fit_images(images, img_size, in_chans), labels


def num_classes_of(name: str, data_dir=None) -> int:
    """Number of classes of a dataset (10 for fashion-mnist and synthetic)."""
    if name == "imagefolder" or name.startswith("imagefolder:"):
        return len(imagefolder_classes(name.partition(":")[2] or data_dir))
    return 10


def normalize(images, mean, std):
    """uint8 NCHW (numpy or torch) -> float32 torch tensor ``(x / 255 - mean) / std`` per channel."""
    import torch
    x = torch.as_tensor(images).float().div_(255.0)
    c = x.shape[1]
    mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
    std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
    if mean.numel() == 1:
        mean, std = mean.expand(c), std.expand(c)
    if mean.numel() != c or std.numel() != c:
        raise ValueError(f"mean/std have {mean.numel()} entries for {c}-channel images")
    return (x - mean.view(1, c, 1, 1)) / std.view(1, c, 1, 1)
