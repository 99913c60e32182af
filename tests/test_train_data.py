"""The training data sets on tiny data written here: the ImageNet preset's transforms (Bag of
Tricks' numbers), MNIST in its raw IDX format and an image folder, read through the real loaders and
trained on for one epoch by the runner."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from torchvision.transforms import v2

import netspec
from netspec.train import load_data, train
from netspec.train.data import (
    BOT_MEAN,
    BOT_STD,
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRESETS,
    Lighting,
    imagenet_transforms,
    torchvision_transforms,
)

from .conftest import SPECS

LENET = SPECS / "lenet5.yaml"


# ---------------------------------------------------------------- the imagenet preset


def _steps(compose) -> list:
    assert isinstance(compose, v2.Compose)
    return list(compose.transforms)


def test_imagenet_preset_has_the_papers_numbers():
    tf_train, tf_val = imagenet_transforms((3, 224, 224))
    crop, flip, jitter, to_image, to_float, light, norm = _steps(tf_train)
    assert isinstance(crop, v2.RandomResizedCrop)
    assert list(crop.size) == [224, 224]
    assert tuple(crop.scale) == (0.08, 1.0) and tuple(crop.ratio) == (3 / 4, 4 / 3)
    assert isinstance(flip, v2.RandomHorizontalFlip) and flip.p == 0.5
    assert isinstance(jitter, v2.ColorJitter)
    for factor in (jitter.brightness, jitter.contrast, jitter.saturation):
        assert tuple(factor) == pytest.approx((0.6, 1.4), abs=1e-12)
    assert jitter.hue is None
    assert isinstance(to_image, v2.ToImage) and isinstance(to_float, v2.ToDtype)
    assert isinstance(light, Lighting) and light.alphastd == 0.1
    assert torch.equal(light.eigval, torch.tensor(IMAGENET_EIGVAL))
    assert torch.equal(light.eigvec, torch.tensor(IMAGENET_EIGVEC))
    assert isinstance(norm, v2.Normalize)
    assert list(norm.mean) == [123.68 / 255, 116.779 / 255, 103.939 / 255]
    assert list(norm.std) == [58.393 / 255, 57.12 / 255, 57.375 / 255]

    resize, center, to_image, to_float, norm = _steps(tf_val)
    assert isinstance(resize, v2.Resize) and list(resize.size) == [256]
    assert isinstance(center, v2.CenterCrop) and list(center.size) == [224, 224]
    assert list(norm.mean) == list(BOT_MEAN) and list(norm.std) == list(BOT_STD)


def test_normalisation_constants():
    assert BOT_MEAN == (123.68 / 255, 116.779 / 255, 103.939 / 255)
    assert BOT_STD == (58.393 / 255, 57.12 / 255, 57.375 / 255)
    # a pixel at the mean on the 0-255 scale normalises to 0, one std above it to 1
    _, tf_val = imagenet_transforms((3, 224, 224))
    norm = _steps(tf_val)[-1]
    pixel = torch.tensor([123.68, 116.779, 103.939]).view(3, 1, 1) / 255
    assert torch.allclose(norm(pixel), torch.zeros(3, 1, 1), atol=1e-6)
    pixel = pixel + torch.tensor([58.393, 57.12, 57.375]).view(3, 1, 1) / 255
    assert torch.allclose(norm(pixel), torch.ones(3, 1, 1), atol=1e-6)


def test_imagenet_preset_scales_with_the_input():
    tf_train, tf_val = imagenet_transforms((3, 32, 32))
    assert list(_steps(tf_train)[0].size) == [32, 32]
    assert list(_steps(tf_val)[0].size) == [round(32 * 256 / 224)]  # 37
    assert list(_steps(tf_val)[1].size) == [32, 32]
    tf_train, tf_val = imagenet_transforms((1, 299, 299))
    assert list(_steps(tf_val)[0].size) == [round(299 * 256 / 224)]
    assert isinstance(_steps(tf_train)[-2], v2.Grayscale)  # grey after the (RGB) lighting


def test_pca_lighting_with_alpha_fixed_adds_exactly_the_offset(monkeypatch):
    alpha = torch.tensor([0.7, -1.3, 0.4])
    light = Lighting(0.1)
    monkeypatch.setattr(torch, "randn", lambda *shape, **kw: alpha / 0.1)
    img = torch.rand(3, 6, 7)
    out = light(img)
    offset = torch.tensor(IMAGENET_EIGVEC) @ (alpha * torch.tensor(IMAGENET_EIGVAL))
    assert torch.equal(light.offset(alpha), offset)
    assert torch.equal(out, img + offset.view(3, 1, 1))  # every pixel, bit for bit
    for c in range(3):  # written out: sum_k v[c, k] alpha_k lambda_k
        expected = sum(IMAGENET_EIGVEC[c][k] * float(alpha[k]) * IMAGENET_EIGVAL[k] for k in range(3))
        assert torch.allclose(out[c] - img[c], torch.full((6, 7), expected), atol=1e-6)


def test_unknown_preset(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(netspec.SpecError, match="unknown imagefolder preset 'coco'"):
        load_data(f"imagefolder:{tmp_path}", (3, 32, 32), preset="coco")


# ---------------------------------------------------------------- tiny MNIST in IDX format


def _write_idx(path, images: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> None:
    if images is not None:  # magic 0x00000803: unsigned bytes, 3 dimensions
        n, h, w = images.shape
        path.write_bytes(struct.pack(">IIII", 0x803, n, h, w) + images.to(torch.uint8).numpy().tobytes())
    else:  # magic 0x00000801: unsigned bytes, 1 dimension
        path.write_bytes(struct.pack(">II", 0x801, len(labels)) + labels.to(torch.uint8).numpy().tobytes())


def _tiny_mnist(root, n_train: int = 20, n_test: int = 10) -> dict[str, torch.Tensor]:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = torch.arange(n) % 10
        images = torch.zeros(n, 28, 28, dtype=torch.uint8)
        for i, y in enumerate(labels.tolist()):  # a bright square whose place gives the class
            r, c = divmod(y, 5)
            images[i, 4 + 10 * r : 12 + 10 * r, 1 + 5 * c : 6 + 5 * c] = 255
        images |= torch.randint(0, 30, images.shape, generator=g, dtype=torch.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images=images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels=labels)
        data[prefix] = images, labels
    return data


def test_mnist_reads_raw_idx_files(tmp_path):
    data = _tiny_mnist(tmp_path)
    before = sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir())
    s = load_data(f"mnist:{tmp_path}", (1, 32, 32), classes=10)
    assert (len(s.train), len(s.val), s.classes) == (20, 10, 10)
    x, y = s.train[3]
    assert x.shape == (1, 32, 32) and int(y) == 3
    assert [int(s.val[i][1]) for i in range(10)] == list(range(10))
    # the image is the file's bytes, padded by 2 and normalised
    expected = (data["train"][0][3].float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(x[0, 2:30, 2:30], expected, atol=1e-5)
    assert torch.allclose(x[0, 0], torch.full((32,), -0.1307 / 0.3081), atol=1e-5)
    x28, _ = load_data(f"mnist:{tmp_path}", (3, 28, 28)).val[0]
    assert x28.shape == (3, 28, 28)
    # nothing downloaded: the raw folder holds exactly the four files written
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == before
    assert sorted(p.name for p in (tmp_path / "MNIST").iterdir()) == ["raw"]


def _read_metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]


def test_lenet5_trains_one_epoch_on_tiny_mnist(tmp_path):
    _tiny_mnist(tmp_path / "data")
    out = tmp_path / "run"
    overrides = [
        f"train.data=mnist:{tmp_path / 'data'}",
        "train.epochs=1",
        "train.batch_size=5",
        "train.plots=false",
    ]
    result = train(LENET, out=out, overrides=overrides, log="quiet")
    assert len(result.history) == 1 and result.final["step"] == 20 // 5
    (row,) = _read_metrics(out)
    assert row["epoch"] == 1 and 0.0 <= row["val_top1"] <= 1.0 and row.get("val_n", 10) == 10
    assert len((out / "metrics.csv").read_text().splitlines()) == 2


# ---------------------------------------------------------------- tiny image folder

COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}


def _tiny_folder(root, n_train: int = 4, n_val: int = 2) -> None:
    from PIL import Image

    for split, n in (("train", n_train), ("val", n_val)):
        for name, colour in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (48 + 4 * i, 40), colour).save(root / split / name / f"{i}.png")


def test_imagefolder_with_the_imagenet_preset(tmp_path):
    _tiny_folder(tmp_path)
    s = load_data(f"imagefolder:{tmp_path}", (3, 32, 32), classes=3)
    assert (len(s.train), len(s.val), s.classes) == (12, 6, 3)
    assert s.train.classes == ["blue", "green", "red"]
    assert [int(s.val[i][1]) for i in range(6)] == [0, 0, 1, 1, 2, 2]
    assert [int(s.train[i][1]) for i in range(12)] == [0] * 4 + [1] * 4 + [2] * 4
    x, _ = s.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    v, _ = s.val[4]  # a flat red image: exactly ((220, 30, 30) - mean) / std
    expected = (torch.tensor([220.0, 30.0, 30.0]) / 255 - torch.tensor(BOT_MEAN)) / torch.tensor(BOT_STD)
    assert v.shape == (3, 32, 32)
    assert torch.allclose(v, expected.view(3, 1, 1).expand(3, 32, 32), atol=1e-5)
    grey = load_data(f"imagefolder:{tmp_path}", (1, 24, 24), augment=False)
    assert grey.train[0][0].shape == (1, 24, 24) and grey.val[0][0].shape == (1, 24, 24)


def test_lenet5_trains_one_epoch_on_a_tiny_image_folder(tmp_path):
    _tiny_folder(tmp_path / "data")
    out = tmp_path / "run"
    overrides = [
        "input.channels=3",
        "classes=3",
        f"train.data=imagefolder:{tmp_path / 'data'}",
        "train.epochs=1",
        "train.batch_size=4",
        "train.plots=false",
    ]
    result = train(LENET, out=out, overrides=overrides, log="quiet")
    assert len(result.history) == 1 and result.final["step"] == 12 // 4
    (row,) = _read_metrics(out)
    assert row["epoch"] == 1 and 0.0 <= row["val_top1"] <= 1.0 and row.get("val_n", 6) == 6
    assert len((out / "metrics.csv").read_text().splitlines()) == 2


# ---------------------------------------------------------------- the tricks on digits

# The best small zoo network with Bag of Tricks on the embedded digits: ResNet-20 (CIFAR) at the
# digits' 1x16x16 (the 8x8 images resized), zero gamma, no bias decay, Nesterov, label smoothing
# 0.1 (the paper's form), linear warmup then per-iteration cosine decay. Measured on 2 shared CPU
# cores: 99.44%, 99.72%, 99.72% val top-1 for seeds 0, 1, 2, 60-110 s a seed (so marked slow).
DIGITS_TRICKS = [
    "input.channels=1",
    "input.size=16",
    "tricks=[zero_gamma]",
    "train.data=digits",
    "train.epochs=15",
    "train.batch_size=32",
    "train.optimizer.lr=0.05",
    "train.optimizer.nesterov=true",
    "train.optimizer.weight_decay=5e-4",
    "train.optimizer.no_bias_decay=true",
    "train.schedule.name=cosine",
    "train.schedule.warmup_epochs=1",
    "train.label_smoothing=0.1",
    "train.plots=false",
]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resnet20_with_the_tricks_reaches_98_5_on_digits(tmp_path, seed):
    result = train(
        SPECS / "resnet20_cifar.yaml",
        out=tmp_path / "run",
        overrides=[*DIGITS_TRICKS, f"train.seed={seed}"],
        log="quiet",
    )
    assert result.final["val_top1"] >= 0.985, result.history


# ---------------------------------------------------------------- the torchvision preset


def _random_images(sizes) -> list:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


# (width, height): square, landscape, portrait, smaller than the crop, odd margins on either side
REFERENCE_SIZES = [(224, 224), (300, 200), (200, 300), (640, 480), (257, 999), (100, 150), (333, 257)]


def test_torchvision_preset_validation_is_the_weights_transforms():
    from torchvision.models import ResNet50_Weights

    reference = ResNet50_Weights.IMAGENET1K_V1.transforms()  # ImageClassification(256 -> 224), no download
    _, ours = torchvision_transforms((3, 224, 224))
    _, bot = imagenet_transforms((3, 224, 224))
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    bot_mean, bot_std = torch.tensor(BOT_MEAN).view(3, 1, 1), torch.tensor(BOT_STD).view(3, 1, 1)
    # the two normalisations are linear in the pixel x in [0, 1]: their largest gap is at x = 0 or 1
    bound = max(float(((x - bot_mean) / bot_std - (x - mean) / std).abs().max()) for x in (0.0, 1.0))
    for img in _random_images(REFERENCE_SIZES):
        expected = reference(img)
        got = ours(img)
        assert got.shape == expected.shape == (3, 224, 224) and got.dtype == torch.float32
        # Not bit-exact: v2.ToDtype(scale=True) multiplies the uint8 pixels by 1/255 where
        # ImageClassification's convert_image_dtype divides by 255, a last-bit difference on [0, 1]
        # (<= 6e-8) that the division by std (~0.22) makes at most ~3e-7.
        assert torch.allclose(got, expected, rtol=0, atol=1e-6)
        # ...while the resized and cropped pixels are exactly the same: both come back as uint8
        pixels = ((got * std + mean) * 255).round().to(torch.uint8)
        assert torch.equal(pixels, ((expected * std + mean) * 255).round().to(torch.uint8))
        # the imagenet preset crops the same pixels but normalises with Bag of Tricks' 0-255 constants
        # (123.68 / 255 = 0.48502 vs 0.485, 58.393 / 255 = 0.22899 vs 0.229, ...): close, not equal
        diff = float((bot(img) - expected).abs().max())
        assert 0 < diff <= bound + 1e-6 and diff < 0.02


def test_torchvision_preset_training_is_crop_and_flip():
    tf_train, tf_val = torchvision_transforms((3, 224, 224))
    steps = _steps(tf_train)
    crop, flip, to_image, to_float, norm = steps
    assert isinstance(crop, v2.RandomResizedCrop)
    assert list(crop.size) == [224, 224]
    assert tuple(crop.scale) == (0.08, 1.0) and tuple(crop.ratio) == (3 / 4, 4 / 3)
    assert crop.interpolation == v2.InterpolationMode.BILINEAR and crop.antialias is True
    assert isinstance(flip, v2.RandomHorizontalFlip) and flip.p == 0.5
    assert isinstance(to_image, v2.ToImage)
    assert isinstance(to_float, v2.ToDtype) and to_float.dtype == torch.float32 and to_float.scale
    assert isinstance(norm, v2.Normalize)
    assert list(norm.mean) == [0.485, 0.456, 0.406] and list(norm.std) == [0.229, 0.224, 0.225]
    assert not any(isinstance(t, v2.ColorJitter | Lighting) for t in steps)
    resize, center, *_ = _steps(tf_val)
    assert isinstance(resize, v2.Resize) and list(resize.size) == [256]
    assert resize.interpolation == v2.InterpolationMode.BILINEAR and resize.antialias is True
    assert isinstance(center, v2.CenterCrop) and list(center.size) == [224, 224]

    (img,) = _random_images([(300, 200)])
    x = tf_train(img)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    tf_train, tf_val = torchvision_transforms((1, 32, 32))
    assert isinstance(_steps(tf_train)[-2], v2.Grayscale)  # grey after the conversion to a tensor
    norm = _steps(tf_train)[-1]
    assert list(norm.mean) == pytest.approx([sum(IMAGENET_MEAN) / 3])
    assert list(norm.std) == pytest.approx([sum(IMAGENET_STD) / 3])
    assert list(_steps(tf_val)[0].size) == [round(32 * 256 / 224)]  # 37
    for tf in (tf_train, tf_val):
        x = tf(img)
        assert x.shape == (1, 32, 32) and x.dtype == torch.float32


def test_imagefolder_with_the_torchvision_preset(tmp_path):
    _tiny_folder(tmp_path)
    s = load_data(f"imagefolder:{tmp_path}", (3, 32, 32), classes=3, preset="torchvision")
    assert (len(s.train), len(s.val), s.classes) == (12, 6, 3)
    expected_train, expected_val = torchvision_transforms((3, 32, 32))
    assert repr(s.train.transform) == repr(expected_train)
    assert repr(s.val.transform) == repr(expected_val)
    assert repr(s.train.transform) != repr(imagenet_transforms((3, 32, 32))[0])
    x, _ = s.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    v, _ = s.val[4]  # a flat red image: exactly ((220, 30, 30) / 255 - mean) / std, torchvision's numbers
    expected = (torch.tensor([220.0, 30.0, 30.0]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(
        IMAGENET_STD
    )
    assert torch.allclose(v, expected.view(3, 1, 1).expand(3, 32, 32), atol=1e-5)
    # no preset: the imagenet one; augment=False: the validation transform for training too
    default = load_data(f"imagefolder:{tmp_path}", (3, 32, 32))
    assert repr(default.train.transform) == repr(imagenet_transforms((3, 32, 32))[0])
    plain = load_data(f"imagefolder:{tmp_path}", (3, 32, 32), augment=False, preset="torchvision")
    assert repr(plain.train.transform) == repr(expected_val)
    assert set(PRESETS) == {"imagenet", "torchvision"}


def test_a_preset_needs_imagefolder_data():
    from netspec.errors import Location

    at = Location("spec.yaml", 12, 11)
    with pytest.raises(netspec.SpecError) as info:
        load_data("digits", (1, 8, 8), preset="torchvision", preset_where=at)
    (problem,) = info.value.problems
    assert problem.path == ("train", "preset") and problem.location == at
    assert "the preset 'torchvision' applies to imagefolder data, not 'digits'" in problem.message
    assert "imagefolder:DIR" in problem.hint
    assert "spec.yaml:12:11: train.preset:" in str(info.value)
    with pytest.raises(netspec.SpecError, match=r"train\.preset"):
        load_data("synthetic:8", (3, 8, 8), preset="imagenet")
    with pytest.raises(netspec.SpecError) as info:  # unknown: at train.preset too
        load_data("imagefolder:/nonexistent", (3, 8, 8), preset="coco", preset_where=at)
    (problem,) = info.value.problems
    assert problem.path == ("train", "preset") and problem.location == at
    assert "unknown imagefolder preset 'coco'" in problem.message


def test_the_recipe_accepts_only_known_presets():
    import pydantic

    from netspec.train.recipe import Recipe, validate_recipe

    assert Recipe().preset is None
    assert Recipe(preset="torchvision").preset == "torchvision"
    with pytest.raises(pydantic.ValidationError):
        Recipe(preset="bogus")
    with pytest.raises(netspec.SpecError, match=r"train\.preset") as info:
        validate_recipe({"preset": "imagenett"})
    assert info.value.problems[0].path == ("train", "preset")
