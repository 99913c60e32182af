"""The runner's fast paths, checked against torch's own machinery: in-memory data served by tensor
indexing (the examples and shards torch's DataLoader and DistributedSampler would give), the batched
random shift equal to torchvision's pad-and-crop, workers whose augmentations do not depend on the
worker count (so they can be persistent and a resume stays exact), the progress bar drawn a few
times a second, and the intra-op thread count chosen per run and given back to the caller."""

from __future__ import annotations

import io
import json

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset
from torchvision.transforms.v2 import functional as TF

from netspec.train import Recipe, load_data, train
from netspec.train.data import DataSplit, RandomShift, loaders
from netspec.train.loaders import TensorBatches, Tensors, batches, default_workers
from netspec.train.progress import Reporter

pytestmark = pytest.mark.usefixtures("one_thread")


def _numbered(n: int) -> TensorDataset:
    """Images whose every pixel is the example's index: a batch says which examples it holds."""
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return TensorDataset(x, torch.arange(n))


def test_in_memory_epoch_has_the_dataloaders_batches_and_each_example_once():
    data = _numbered(100)
    ours = TensorBatches(Tensors(*data.tensors), 8, shuffle=True, drop_last=True, generator=torch.Generator())
    theirs = DataLoader(data, batch_size=8, shuffle=True, drop_last=True)
    got = [(x, y) for x, y in ours]
    assert len(got) == len(ours) == len(theirs) == 12
    seen = torch.cat([y for _, y in got])
    assert len(set(seen.tolist())) == 96  # 4 dropped, none twice
    assert all(torch.equal(x[:, 0, 0, 0].long(), y) for x, y in got)  # images travel with their labels
    assert [x.shape for x, _ in got] == [x.shape for x, _ in theirs]


def test_in_memory_order_is_reproducible_from_the_generator_state():
    source = Tensors(*_numbered(50).tensors)
    g = torch.Generator().manual_seed(3)
    first = TensorBatches(source, 10, shuffle=True, generator=g)
    list(first)  # epoch 1
    saved = g.get_state()
    epoch2 = [y for _, y in first]
    resumed = TensorBatches(source, 10, shuffle=True, generator=torch.Generator().manual_seed(99))
    resumed.generator.set_state(saved)  # type: ignore[union-attr]
    assert all(torch.equal(a, b) for a, b in zip(epoch2, list(y for _, y in resumed), strict=True))


@pytest.mark.parametrize("epoch", [0, 5])
def test_distributed_shards_are_distributed_samplers(epoch):
    data = _numbered(37)
    for rank in range(3):
        ours = TensorBatches(
            Tensors(*data.tensors), 4, shuffle=True, drop_last=True, rank=rank, world_size=3, seed=7
        )
        ours.set_epoch(epoch)
        sampler = DistributedSampler(data, num_replicas=3, rank=rank, shuffle=True, seed=7, drop_last=True)
        sampler.set_epoch(epoch)
        theirs = DataLoader(data, batch_size=4, sampler=sampler, drop_last=True)
        assert [y.tolist() for _, y in ours] == [y.tolist() for _, y in theirs]


def test_batched_shift_equals_torchvisions_pad_and_crop():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 12, 10, generator=g), torch.arange(16)
    shift = RandomShift(x, y, shift=2, fill=-0.5)
    torch.manual_seed(1)
    offsets = torch.randint(0, 5, (6, 2))  # the draw batch() makes
    torch.manual_seed(1)
    index = torch.tensor([3, 0, 15, 7, 7, 9])
    got, labels = shift.batch(index)
    for k, (i, (dy, dx)) in enumerate(zip(index.tolist(), offsets.tolist(), strict=True)):
        padded = TF.pad(x[i], [2, 2, 2, 2], fill=-0.5)
        assert torch.equal(got[k], TF.crop(padded, dy, dx, 12, 10)), k
    assert torch.equal(labels, y[index])


class _Noisy(Dataset):
    """A data set 'read from files': each example is its index plus augmentation noise."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, i: int):
        return torch.full((1, 2, 2), float(i)) + torch.rand(1, 2, 2), i


def test_worker_augmentations_do_not_depend_on_the_workers_and_resume_exactly():
    def epochs(workers: int, state: torch.Tensor | None = None, n: int = 2) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        if state is not None:
            g.set_state(state)
        loader = batches(_Noisy(), 4, train=True, workers=workers, generator=g)
        assert isinstance(loader, DataLoader) and loader.persistent_workers
        out = []
        for _ in range(n):
            out += [x for x, _ in loader]
        return out

    one, two = epochs(1), epochs(2)
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))
    # a run resumed after epoch 1 restores the generator as epoch 1 left it
    first = torch.Generator().manual_seed(0)
    loader = batches(_Noisy(), 4, train=True, workers=1, generator=first)
    epoch1 = [x for x, _ in loader]
    resumed = epochs(2, first.get_state(), n=1)
    assert all(torch.equal(a, b) for a, b in zip(one[len(epoch1) :], resumed, strict=True))


def test_default_workers_leave_a_core_to_the_loop(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert [default_workers(c) for c in (1, 2, 4, 64)] == [0, 1, 3, 8]
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: four processes share the machine
    assert default_workers(16) == 3


class _Counted(TensorDataset):
    reads = 0

    def __getitem__(self, i):
        type(self).reads += 1
        return super().__getitem__(i)


def test_in_memory_data_is_never_read_example_by_example(tmp_path):
    split = load_data("synthetic:80", (1, 6, 6), classes=3)
    train_set, val_set = (_Counted(*s.tensors) for s in (split.train, split.val))  # type: ignore[attr-defined]
    counted = DataSplit(train_set, val_set, 3, "counted", (1, 6, 6))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 3))
    train(model, Recipe(epochs=2, batch_size=8, plots=False), data=counted, out=tmp_path, log="quiet")
    assert _Counted.reads == 0
    train_batches, _ = loaders(counted, 8)
    assert isinstance(train_batches, TensorBatches)


def test_progress_bar_is_drawn_a_few_times_a_second():
    reporter = Reporter("rich", stream=io.StringIO())
    event = {"event": "step", "epoch": 1, "steps": 500, "loss": 1.0, "lr": 0.1, "images_per_s": 1.0}
    for i in range(1, 500):  # far faster than BAR_INTERVAL apart
        reporter.emit({**event, "step_in_epoch": i})
    assert reporter._progress.tasks[0].completed == 1  # the first draw only
    reporter.emit({**event, "step_in_epoch": 500})  # the epoch's end is always drawn
    assert reporter._progress.tasks[0].completed == 500
    reporter.close()


def test_threads_are_the_runs_and_the_callers_come_back(tmp_path, capsys):
    split = load_data("synthetic:40", (1, 4, 4), classes=2)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    seen: list[int] = []
    recipe = Recipe(epochs=1, batch_size=8, plots=False, threads=2)
    listen = [lambda event: seen.append(torch.get_num_threads())]
    train(model, recipe, data=split, out=tmp_path / "a", log="json", callbacks=listen)
    assert torch.get_num_threads() == 1 and set(seen) == {2}
    start = json.loads(capsys.readouterr().out.splitlines()[0])
    assert start["threads"] == 2 and start["threads_chosen"] == "2 requested"
    assert "threads: 2\n" in (tmp_path / "a" / "recipe.yaml").read_text()


def test_resume_with_other_threads_is_not_refused(tmp_path):
    split = load_data("synthetic:40", (1, 4, 4), classes=2)

    def run(threads: int, **kw):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        recipe = Recipe(epochs=2, batch_size=8, plots=False, threads=threads)
        return train(model, recipe, data=split, out=tmp_path, log="quiet", **kw)

    run(1, stop_after=1)
    assert len(run(2, resume=True).history) == 2


def _cifar_like(n: int = 6) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, 32, 32, 3), generator=torch.Generator().manual_seed(2), dtype=torch.uint8
    )


def test_uint8_images_normalised_on_the_device_equal_torchvisions_float_path():
    from PIL import Image
    from torchvision import transforms as T

    from netspec.train.data import CIFAR10_MEAN, CIFAR10_STD, Images8

    hwc = _cifar_like()
    val = Images8(hwc.permute(0, 3, 1, 2).contiguous(), torch.arange(6), CIFAR10_MEAN, CIFAR10_STD)
    reference = T.Compose([T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])  # CIFAR10's val transform
    x, _ = val.batch(torch.arange(6))
    for i in range(6):
        assert torch.allclose(x[i], reference(Image.fromarray(hwc[i].numpy())), atol=1e-6), i


def test_uint8_training_crops_and_flips_equal_torchvisions():
    from PIL import Image
    from torchvision import transforms as T

    from netspec.train.data import CIFAR10_MEAN, CIFAR10_STD, Images8

    hwc = _cifar_like()
    train_set = Images8(
        hwc.permute(0, 3, 1, 2).contiguous(),
        torch.arange(6),
        CIFAR10_MEAN,
        CIFAR10_STD,
        pad=4,
        crop=True,
        flip=True,
    )
    torch.manual_seed(5)
    offsets, mirror = torch.randint(0, 9, (6, 2)), torch.rand(6) < 0.5  # the draws batch() makes
    assert 0 < int(mirror.sum()) < 6
    torch.manual_seed(5)
    x, _ = train_set.batch(torch.arange(6))
    tensor = T.Compose([T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    for i, ((dy, dx), m) in enumerate(zip(offsets.tolist(), mirror.tolist(), strict=True)):
        img = TF.crop(TF.pad(Image.fromarray(hwc[i].numpy()), [4, 4, 4, 4], fill=0), dy, dx, 32, 32)
        img = TF.horizontal_flip(img) if m else img
        assert torch.allclose(x[i], tensor(img), atol=1e-6), i


class _NoisyImages(Dataset):
    """A data set read example by example (as from files), with random augmentation noise."""

    def __init__(self, n: int):
        g = torch.Generator().manual_seed(4)
        self.x, self.y = torch.randn(n, 1, 4, 4, generator=g), torch.arange(n) % 2

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i] + 0.1 * torch.randn(1, 4, 4), self.y[i]


def test_a_run_with_persistent_workers_resumes_bitwise(tmp_path):
    split = DataSplit(_NoisyImages(48), _NoisyImages(16), 2, "noisy", (1, 4, 4))

    def run(out, **kw):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        recipe = Recipe(epochs=3, batch_size=8, plots=False, workers=1, mixup_alpha=0.2)
        return train(model, recipe, data=split, out=out, log="quiet", **kw)

    straight = run(tmp_path / "straight")
    run(tmp_path / "cut", stop_after=1)
    resumed = run(tmp_path / "cut", resume=True)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
