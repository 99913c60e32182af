"""Data sets for the training runner, named by the recipe's `data` (`--set train.data=...`).

- `digits` (the default, embedded: nothing to download, no optional package): scikit-learn's 1,797
  8x8 handwritten digits, shipped as `netspec/data/digits.npz` and read with numpy, resized
  (bilinear) to the spec's input size, replicated to its channels, normalised with the training
  split's mean and std, with a fixed stratified train/val split (scikit-learn's, drawn with numpy).
- `synthetic` or `synthetic:N`: N random images with random labels (for throughput, not accuracy).
- `mnist:DIR`, `cifar10:DIR`: torchvision's readers; nothing is downloaded unless `download: true`.
- `imagefolder:DIR`: DIR/train/<class>/<image> and DIR/val/<class>/<image>, with the transforms of
  a preset (the recipe's `preset`): `imagenet` (the default), Bag of Tricks' pipeline
  (`imagenet_transforms`), or `torchvision`, the recipe of torchvision's reference classification
  scripts: crop and flip, no colour noise (`torchvision_transforms`).
A missing or malformed data set is a SpecError at `train.data` that says which layout was expected;
a preset for another data set, or an unknown one, is a SpecError at `train.preset`.
"""

from __future__ import annotations

import math
from collections.abc import Sized
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Sampler, TensorDataset

from ..data import DATA_DIR
from ..errors import Location, Problem, SpecError
from .loaders import Loader, batches

KINDS = ("digits", "synthetic", "mnist", "cifar10", "imagefolder")
SPLIT_SEED = 0  # the train/val split of digits and synthetic never depends on the run's seed
DIGITS_FILE = DATA_DIR / "digits.npz"

# ImageNet statistics on [0, 1] RGB (torchvision; Bag of Tricks' 123.68, 116.779, 103.939 / 255)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# PCA of ImageNet RGB pixels (on [0, 1]), as in AlexNet's lighting noise (fb.resnet.torch's values)
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
# Bag of Tricks' ImageNet normalisation, given on the 0-255 scale (applied to [0, 1] tensors / 255)
BOT_MEAN_255 = (123.68, 116.779, 103.939)
BOT_STD_255 = (58.393, 57.12, 57.375)
BOT_MEAN = tuple(m / 255 for m in BOT_MEAN_255)
BOT_STD = tuple(s / 255 for s in BOT_STD_255)
BOT_JITTER = 0.4  # brightness, contrast and saturation scaled by U[0.6, 1.4]
BOT_LIGHTING = 0.1  # PCA lighting alpha ~ N(0, 0.1)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@dataclass
class DataSplit:
    """A training and a validation set of (C, H, W) float tensors with integer labels."""

    train: Dataset
    val: Dataset
    classes: int
    name: str
    input_shape: tuple[int, int, int]

    # every data set here is map-style, with a length (torch's Dataset type does not say so)
    @property
    def train_size(self) -> int:
        return len(cast(Sized, self.train))

    @property
    def val_size(self) -> int:
        return len(cast(Sized, self.val))


def _error(message: str, where: Location | None, hint: str | None = None, field: str = "data") -> SpecError:
    return SpecError(Problem(message, ("train", field), where, hint))


def load_data(
    name: str,
    input_shape: tuple[int, int, int],
    *,
    classes: int | None = None,
    val_fraction: float = 0.2,
    download: bool = False,
    augment: bool = True,
    where: Location | None = None,
    preset: str | None = None,
    preset_where: Location | None = None,
) -> DataSplit:
    """The data set `name` shaped for a network taking `input_shape` = (C, H, W) with `classes`
    outputs. `augment`: random shifts (digits), crops and flips (cifar10, imagefolder) in training.
    `where` is the location of `train.data` in the spec (for errors). `preset`: imagefolder's
    transforms (a key of PRESETS; None: the data set's own, for imagefolder `imagenet`), an error
    located at `preset_where` (that of `train.preset`) for any other data set."""
    kind, _, arg = name.partition(":")
    if kind not in KINDS:
        raise _error(
            f"unknown data set '{name}'",
            where,
            "use digits, synthetic[:N], mnist:DIR, cifar10:DIR or imagefolder:DIR",
        )
    if preset is not None:
        if preset not in PRESETS:
            raise _error(
                f"unknown imagefolder preset '{preset}'", preset_where, "use " + ", ".join(PRESETS), "preset"
            )
        if kind != "imagefolder":
            raise _error(
                f"the preset '{preset}' applies to imagefolder data, not '{name}'",
                preset_where,
                "remove `preset`, or use imagefolder:DIR",
                "preset",
            )
    if kind in ("mnist", "cifar10", "imagefolder") and not arg:
        raise _error(f"'{kind}' needs a directory: '{kind}:DIR'", where)
    if kind == "digits":
        split = digits(input_shape, val_fraction=val_fraction, augment=augment)
    elif kind == "synthetic":
        n = _count(arg, where) if arg else 1024
        split = synthetic(input_shape, classes or 10, n, val_fraction=val_fraction)
    elif kind == "mnist":
        split = _mnist(Path(arg), input_shape, download, where)
    elif kind == "cifar10":
        split = _cifar10(Path(arg), input_shape, download, augment, where)
    else:
        split = _imagefolder(Path(arg), input_shape, augment, where, preset or "imagenet")
    if classes is not None and split.classes > classes:
        raise _error(
            f"the data set '{name}' has {split.classes} classes but the network outputs {classes}",
            where,
            f"set `classes: {split.classes}` in the spec",
        )
    return split


def _count(arg: str, where: Location | None) -> int:
    try:
        n = int(arg)
    except ValueError:
        n = 0
    if not 2 <= n <= 10_000_000:
        raise _error(f"'synthetic:{arg}': the size must be a whole number from 2 to 10,000,000", where)
    return n


def _approximate_mode(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of `draws` to take from each class of `counts`: the floor of each class's share, the
    rest to the largest remainders, ties broken by `rng` (scikit-learn's `_approximate_mode`)."""
    continuous = counts / counts.sum() * draws
    taken = np.floor(continuous)
    need = int(draws - taken.sum())
    remainder = continuous - taken
    for value in np.sort(np.unique(remainder))[::-1]:
        if need == 0:
            break
        (tied,) = np.where(remainder == value)
        add = min(len(tied), need)
        taken[rng.choice(tied, size=add, replace=False)] += 1
        need -= add
    return taken.astype(int)


def _stratified_split(labels: np.ndarray, val_fraction: float) -> tuple[Tensor, Tensor]:
    """Train and validation indices (sorted), each class split in proportion: scikit-learn's
    `train_test_split(stratify=labels, random_state=SPLIT_SEED)` draw for draw, so a run's split is
    the one it was when scikit-learn made it (tests compare the two), with numpy alone."""
    n = len(labels)
    n_val = math.ceil(val_fraction * n)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if min(n_val, n - n_val) < len(classes):
        raise SpecError(
            Problem(
                f"val_fraction {val_fraction} leaves fewer than one example per class in a split",
                ("train", "val_fraction"),
                hint="use a fraction such as 0.2",
            )
        )
    by_class = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(SPLIT_SEED)
    n_train = _approximate_mode(counts, n - n_val, rng)
    n_test = _approximate_mode(counts - n_train, n_val, rng)
    train: list[int] = []
    val: list[int] = []
    for members, k, t in zip(by_class, n_train, n_test, strict=True):
        shuffled = members.take(rng.permutation(len(members)))
        train.extend(shuffled[:k])
        val.extend(shuffled[k : k + t])
    return torch.as_tensor(sorted(train)), torch.as_tensor(sorted(val))


def random_crops(x: Tensor, pad: int, fill: float = 0.0) -> Tensor:
    """Each image of the batch x (B, C, H, W) cut at its own random offset from a copy padded by
    `pad` pixels of `fill`: torchvision's RandomCrop((H, W), padding=pad, fill=fill) for a whole
    batch in one gather. The offsets (B, [dy, dx]) are drawn from torch's CPU RNG."""
    b, c, h, w = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (b, 2)).to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad), value=fill).flatten(2)  # (B, C, (H + 2 pad) * (W + 2 pad))
    width = w + 2 * pad
    window = torch.arange(h, device=x.device).view(h, 1) * width + torch.arange(w, device=x.device)
    start = offsets[:, 0:1] * width + offsets[:, 1:2]  # (B, 1): each image's top-left corner
    index = (window.view(1, h * w) + start).view(b, 1, h * w).expand(b, c, h * w)
    return padded.gather(2, index).view(b, c, h, w)


class Images8(Dataset):
    """uint8 images (N, C, H, W) with their labels, kept as bytes (a quarter of float32's memory; on
    the GPU when they fit: loaders.DEVICE_RESIDENT_BYTES) and made float and normalised a batch at a
    time on the device, as torchvision's ToTensor and Normalize do it: (x / 255 - mean) / std.
    `pad` > 0 with `crop`: each training image is cut at a random offset from a copy padded by `pad`
    black pixels (RandomCrop(size, padding=pad)); without `crop`, padded by `pad` (Pad(pad)). `flip`:
    mirrored with probability 1/2 (RandomHorizontalFlip). Random draws come from torch's CPU RNG."""

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        pad: int = 0,
        crop: bool = False,
        flip: bool = False,
    ):
        self.x, self.y, self.stats = x, y, (mean, std)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        self.pad, self.crop, self.flip = pad, crop, flip

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, y = self.batch(torch.tensor([i]))
        return x[0], y[0]

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        index = index.to(self.x.device)
        x = self.x.index_select(0, index).float().div_(255)  # ToTensor
        if self.pad and self.crop:
            x = random_crops(x, self.pad)
        elif self.pad:
            x = F.pad(x, (self.pad,) * 4)
        if self.flip:
            mirror = (torch.rand(len(index)) < 0.5).to(x.device).view(-1, 1, 1, 1)
            x = torch.where(mirror, x.flip(3), x)
        return (x - self.mean) / self.std, self.y.index_select(0, index)

    def to(self, device: torch.device) -> Images8:
        mean, std = self.stats
        return Images8(
            self.x.to(device), self.y.to(device), mean, std, pad=self.pad, crop=self.crop, flip=self.flip
        )


class RandomShift(Dataset):
    """(x, y) pairs of tensors whose images move by up to `shift` pixels in each direction (drawn
    from torch's RNG), the uncovered border filled with `fill` (the background)."""

    def __init__(self, x: Tensor, y: Tensor, shift: int, fill: float = 0.0):
        self.x, self.y, self.shift, self.fill = x, y, shift, fill

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        img, s = self.x[i], self.shift
        if s == 0:
            return img, self.y[i]
        dy, dx = torch.randint(0, 2 * s + 1, (2,)).tolist()
        h, w = img.shape[-2:]
        padded = F.pad(img, (s, s, s, s), value=self.fill)
        return padded[..., dy : dy + h, dx : dx + w], self.y[i]

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """The examples `index`, each shifted by its own offsets, in one gather (loaders.InMemory)."""
        index = index.to(self.x.device)
        x, y, s = self.x.index_select(0, index), self.y.index_select(0, index), self.shift
        if s == 0:
            return x, y
        return random_crops(x, s, self.fill), y

    def to(self, device: torch.device) -> RandomShift:
        return RandomShift(self.x.to(device), self.y.to(device), self.shift, self.fill)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as shipped in the package (`tools/make_digits.py` wrote them):
    images (1797, 8, 8) of grey levels 0..16 and labels (1797,), both uint8. numpy only, no pickle."""
    with np.load(DIGITS_FILE, allow_pickle=False) as data:
        return data["images"], data["labels"]


def digits(
    input_shape: tuple[int, int, int], *, val_fraction: float = 0.2, augment: bool = True
) -> DataSplit:
    """scikit-learn's bundled digits (1,797 images of 8x8, values 0..16, 10 classes). `augment`:
    training images shift by up to one original pixel (1/8 of the size) in each direction."""
    images, labels = digits_arrays()
    c, h, w = input_shape
    x = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1) / 16.0
    if (h, w) != (8, 8):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    x = x.expand(-1, c, -1, -1).contiguous()
    y = torch.as_tensor(labels, dtype=torch.long)
    tr, va = _stratified_split(labels, val_fraction)
    mean, std = x[tr].mean(), x[tr].std()
    x = (x - mean) / std
    shift = round(min(h, w) / 8) if augment else 0
    train = RandomShift(x[tr], y[tr], shift, fill=float(-mean / std))
    return DataSplit(train, TensorDataset(x[va], y[va]), 10, "digits", input_shape)


def synthetic(
    input_shape: tuple[int, int, int], classes: int, n: int = 1024, *, val_fraction: float = 0.2
) -> DataSplit:
    """n standard-normal images with uniformly random labels, split train/val."""
    g = torch.Generator().manual_seed(SPLIT_SEED)
    n_val = max(1, round(n * val_fraction))
    x = torch.randn(n, *input_shape, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return DataSplit(
        TensorDataset(x[n_val:], y[n_val:]),
        TensorDataset(x[:n_val], y[:n_val]),
        classes,
        f"synthetic:{n}",
        input_shape,
    )


class Lighting:
    """AlexNet-style PCA lighting noise on a [0, 1] RGB tensor (C, H, W): adds
    eigvec @ (alpha * eigval) to every pixel, alpha ~ N(0, alphastd) per channel (Bag of Tricks: 0.1)."""

    def __init__(self, alphastd: float = 0.1, eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC):
        self.alphastd = alphastd
        self.eigval = torch.tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.tensor(eigvec, dtype=torch.float32)

    def offset(self, alpha: Tensor) -> Tensor:
        """The per-channel RGB offset for one draw of alpha (3,)."""
        return self.eigvec @ (alpha * self.eigval)

    def __call__(self, img: Tensor) -> Tensor:
        if self.alphastd == 0:
            return img
        alpha = torch.randn(3) * self.alphastd
        return img + self.offset(alpha).to(img.dtype).view(3, 1, 1)

    def __repr__(self) -> str:
        return f"Lighting(alphastd={self.alphastd})"


def _channels(c: int) -> list:
    from torchvision import transforms as T

    return [T.Grayscale(num_output_channels=c)] if c in (1, 3) else []


def _detail(exc: Exception) -> str:
    """torchvision's own words, unless they are its generic 'not found, use download=True'."""
    text = str(exc)
    return "" if "not found" in text.lower() else f" ({text})"


def _check_channels(kind: str, c: int, where: Location | None) -> None:
    if c not in (1, 3):
        raise _error(f"'{kind}' gives 1- or 3-channel images; the spec's input has {c} channels", where)


def _mnist(
    root: Path, input_shape: tuple[int, int, int], download: bool, where: Location | None
) -> DataSplit:
    from torchvision import datasets
    from torchvision import transforms as T

    c, h, w = input_shape
    _check_channels("mnist", c, where)
    size = [T.Pad(2)] if (h, w) == (32, 32) else [] if (h, w) == (28, 28) else [T.Resize((h, w))]
    tf = T.Compose([*size, *_channels(c), T.ToTensor(), T.Normalize([MNIST_MEAN] * c, [MNIST_STD] * c)])
    layout = (
        f"expected {root}/MNIST/raw/train-images-idx3-ubyte, train-labels-idx1-ubyte,"
        " t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte; `--download` (`download: true`) fetches them"
    )
    split = _packaged(datasets.MNIST, "MNIST", root, tf, tf, download, where, layout)
    if (h, w) in ((28, 28), (32, 32)):  # the transforms are a pad and a normalisation: done by batch
        stats = ((MNIST_MEAN,) * c, (MNIST_STD,) * c)
        pad = (h - 28) // 2
        train, val = (  # Grayscale(c) copies the one channel
            Images8(part.data.unsqueeze(1).expand(-1, c, -1, -1), part.targets, *stats, pad=pad)
            for part in cast(tuple[Any, Any], split)
        )
        split = train, val
    return DataSplit(*split, 10, f"mnist:{root}", input_shape)


def _cifar10(
    root: Path, input_shape: tuple[int, int, int], download: bool, augment: bool, where: Location | None
) -> DataSplit:
    from torchvision import datasets
    from torchvision import transforms as T

    c, h, w = input_shape
    _check_channels("cifar10", c, where)
    resize = [] if (h, w) == (32, 32) else [T.Resize((h, w))]
    norm = T.Normalize(CIFAR10_MEAN, CIFAR10_STD) if c == 3 else T.Normalize([0.4809], [0.2392])
    gray = [T.Grayscale(1)] if c == 1 else []
    train_tf = T.Compose(
        [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), *resize, *gray, T.ToTensor(), norm]
    )
    val_tf = T.Compose([*resize, *gray, T.ToTensor(), norm])
    train_tf = train_tf if augment else val_tf
    layout = (
        f"expected {root}/cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta"
        " (the python version of the archive); `--download` (`download: true`) fetches it"
    )
    split = _packaged(datasets.CIFAR10, "CIFAR-10", root, train_tf, val_tf, download, where, layout)
    if (c, h, w) == (3, 32, 32):  # crop, flip and normalisation: done by batch, on the device
        train, val = (  # (images (N, 3, 32, 32) uint8, labels) of each split
            (torch.from_numpy(part.data).permute(0, 3, 1, 2).contiguous(), torch.as_tensor(part.targets))
            for part in cast(tuple[Any, Any], split)
        )
        stats = (CIFAR10_MEAN, CIFAR10_STD)
        pad = 4 if augment else 0
        split = Images8(*train, *stats, pad=pad, crop=augment, flip=augment), Images8(*val, *stats)
    return DataSplit(*split, 10, f"cifar10:{root}", input_shape)


def _packaged(
    dataset: Any,
    title: str,
    root: Path,
    train_tf: Any,
    val_tf: Any,
    download: bool,
    where: Location | None,
    layout: str,
) -> tuple[Dataset, Dataset]:
    """The training and test splits of one of torchvision's packaged data sets (MNIST, CIFAR10),
    or an error at `train.data` that names the expected `layout`."""
    try:
        train = dataset(str(root), train=True, transform=train_tf, download=download)
        val = dataset(str(root), train=False, transform=val_tf, download=download)
    except (RuntimeError, OSError) as exc:
        raise _error(f"{title} not found in '{root}'" + _detail(exc), where, layout) from None
    return train, val


def imagenet_transforms(input_shape: tuple[int, int, int]) -> tuple[Any, Any]:
    """The Bag of Tricks ImageNet pipeline (the `imagenet` preset of `imagefolder:DIR`) as
    torchvision.transforms.v2 (training, validation) transforms of RGB PIL images, for an input of
    `input_shape` = (C, H, W), C 1 or 3.

    Training: RandomResizedCrop to (H, W), area [8%, 100%], aspect ratio [3/4, 4/3]; horizontal flip;
    brightness, contrast and saturation jitter 0.4; PCA lighting noise N(0, 0.1) with ImageNet's
    eigenvalues and eigenvectors; normalisation by mean (123.68, 116.779, 103.939) and std
    (58.393, 57.12, 57.375) / 255. Validation: the shorter side resized to 256 and a 224 center crop,
    both scaled with the input (resize = round(min(H, W) * 256 / 224)). One channel: the image is
    made grey after the lighting and normalised with the mean of the three means and stds."""
    from torchvision.transforms import v2

    c, h, w = input_shape
    mean, std = (BOT_MEAN, BOT_STD) if c == 3 else ([sum(BOT_MEAN) / 3], [sum(BOT_STD) / 3])
    gray = [v2.Grayscale(1)] if c == 1 else []
    tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    train = v2.Compose(
        [
            v2.RandomResizedCrop((h, w), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
            v2.RandomHorizontalFlip(p=0.5),
            v2.ColorJitter(brightness=BOT_JITTER, contrast=BOT_JITTER, saturation=BOT_JITTER),
            *tensor,
            Lighting(BOT_LIGHTING),
            *gray,
            v2.Normalize(mean, std),
        ]
    )
    resize = round(min(h, w) * 256 / 224)  # shorter side 256 for 224
    val = v2.Compose(
        [
            v2.Resize(resize, antialias=True),
            v2.CenterCrop((h, w)),
            *tensor,
            *gray,
            v2.Normalize(mean, std),
        ]
    )
    return train, val


def torchvision_transforms(input_shape: tuple[int, int, int]) -> tuple[Any, Any]:
    """The recipe of torchvision's reference classification scripts (the `torchvision` preset of
    `imagefolder:DIR`; references/classification/presets.py with its defaults) as
    torchvision.transforms.v2 (training, validation) transforms of RGB PIL images, for an input of
    `input_shape` = (C, H, W), C 1 or 3.

    Training: RandomResizedCrop to (H, W), area [8%, 100%], aspect ratio [3/4, 4/3], bilinear with
    antialiasing; horizontal flip; no colour jitter, no lighting noise; normalisation by torchvision's
    ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). Validation: the shorter side
    resized (bilinear, antialiased) to 256 and a 224 center crop, both scaled with the input
    (resize = round(min(H, W) * 256 / 224)): at (3, 224, 224) the same tensor as the weights'
    `transforms()` (torchvision.transforms._presets.ImageClassification). One channel: the image is
    made grey after the conversion to a tensor and normalised with the mean of the three means and
    stds."""
    from torchvision.transforms import v2

    c, h, w = input_shape
    mean, std = (
        (IMAGENET_MEAN, IMAGENET_STD) if c == 3 else ([sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3])
    )
    bilinear = v2.InterpolationMode.BILINEAR
    gray = [v2.Grayscale(1)] if c == 1 else []
    tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    train = v2.Compose(
        [
            v2.RandomResizedCrop(
                (h, w), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation=bilinear, antialias=True
            ),
            v2.RandomHorizontalFlip(p=0.5),
            *tensor,
            *gray,
            v2.Normalize(mean, std),
        ]
    )
    resize = round(min(h, w) * 256 / 224)  # shorter side 256 for 224
    val = v2.Compose(
        [
            v2.Resize(resize, interpolation=bilinear, antialias=True),
            v2.CenterCrop((h, w)),
            *tensor,
            *gray,
            v2.Normalize(mean, std),
        ]
    )
    return train, val


PRESETS = {"imagenet": imagenet_transforms, "torchvision": torchvision_transforms}


def _imagefolder(
    root: Path,
    input_shape: tuple[int, int, int],
    augment: bool,
    where: Location | None,
    preset: str = "imagenet",
) -> DataSplit:
    """ImageFolder's reader (images opened as RGB) with the transforms of `preset` (a key of PRESETS,
    checked by load_data)."""
    from torchvision import datasets

    _check_channels("imagefolder", input_shape[0], where)
    layout = f"expected {root}/train/<class>/<image> and {root}/val/<class>/<image>, the same classes"
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise _error(f"'{root}' is not an image folder data set", where, layout)
    train_tf, val_tf = PRESETS[preset](input_shape)
    train_tf = train_tf if augment else val_tf
    try:
        train = datasets.ImageFolder(str(root / "train"), transform=train_tf)
        val = datasets.ImageFolder(str(root / "val"), transform=val_tf)
    except (RuntimeError, OSError, FileNotFoundError) as exc:
        raise _error(f"cannot read the image folder '{root}' ({exc})", where, layout) from None
    if train.classes != val.classes:
        raise _error(f"'{root}': train and val have different classes", where, layout)
    return DataSplit(train, val, len(train.classes), f"imagefolder:{root}", input_shape)


def loaders(
    split: DataSplit,
    batch_size: int,
    *,
    eval_batch_size: int | None = None,
    workers: int = 0,
    generator: torch.Generator | None = None,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
) -> tuple[Loader, Loader]:
    """Shuffled training batches (the last partial batch dropped, so every epoch has the same number
    of iterations) drawn with `generator`, and in-order validation batches: an in-memory data set by
    tensor indexing, any other through a DataLoader with `workers` processes (loaders.batches). With
    `world_size` > 1 (torchrun), each rank reads its shard of the training set (DistributedSampler's
    order, shuffled with `seed` + epoch: call `set_epoch`) and of the validation set (every example
    on exactly one rank, no padding)."""
    processes = f" on {world_size} processes" if world_size > 1 else ""
    if split.train_size < batch_size * world_size:
        raise SpecError(
            Problem(
                f"batch_size {batch_size}{processes} is larger than the training set"
                f" ({split.train_size} examples)",
                ("train", "batch_size"),
            )
        )
    train_sampler: Sampler[int] | None = None
    val_sampler: Sampler[int] | None = None
    if world_size > 1:
        from torch.utils.data import DistributedSampler

        from .distributed import ShardSampler

        train_sampler = DistributedSampler(
            split.train, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        val_sampler = ShardSampler(split.val_size, rank, world_size)
    load = partial(
        batches, workers=workers, pin_memory=pin_memory, rank=rank, world_size=world_size, seed=seed
    )
    train = load(split.train, batch_size, train=True, generator=generator, sampler=train_sampler)
    val = load(split.val, eval_batch_size or batch_size, train=False, sampler=val_sampler)
    return train, val
