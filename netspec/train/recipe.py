"""The training recipe: a spec's `train:` section as a Pydantic model (this is its reference).

`--set train.epochs=3` and friends reach the recipe through netspec's ordinary override mechanism
(the spec's `train:` is a free mapping until `recipe_from_spec` validates it here), so a mistake in
an override points at `<--set train.epochs=...>` and a mistake in the file at its line and column.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..errors import Problem, SpecError, clean_pydantic_errors, did_you_mean
from ..source import locate, locate_key
from .threads import MAX_THREADS

REFERENCE_BATCH = 256  # linear scaling rule: lr = base_lr * batch_size / 256 (Goyal et al.; Bag of Tricks)


def _real(value: Any) -> Any:
    # pydantic's lax floats take `true` as 1.0. Text stays allowed: YAML 1.1 reads `1e-4` as a string
    if isinstance(value, bool):
        raise PydanticCustomError(
            "number_type", "must be a number, not {value}", {"value": str(value).lower()}
        )
    return value


Real = Annotated[float, BeforeValidator(_real)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OptimizerConfig(_Strict):
    """The optimizer. `lr` is the base learning rate (before linear scaling, when that is on)."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: Real = Field(0.1, gt=0)
    momentum: Real = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: StrictBool = False
    weight_decay: Real = Field(1e-4, ge=0)
    no_bias_decay: StrictBool = Field(
        False, description="weight decay on conv and linear weights only, not on biases or BN parameters"
    )
    betas: tuple[Real, Real] = Field((0.9, 0.999), description="AdamW betas")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimizerConfig:
        if self.name == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs a momentum > 0")
        return self


class ScheduleConfig(_Strict):
    """Per-iteration learning rate: linear warmup from 0, then cosine, step decay or constant."""

    name: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: Real = Field(0, ge=0, description="linear warmup from 0 over this many epochs")
    milestones: list[StrictInt] = Field(default_factory=list, description="step: epochs at which lr *= gamma")
    gamma: Real = Field(0.1, gt=0, le=1, description="step: the decay factor")

    @model_validator(mode="after")
    def _milestones(self) -> ScheduleConfig:
        if self.milestones != sorted(set(self.milestones)) or any(m < 1 for m in self.milestones):
            raise ValueError("milestones must be increasing epoch numbers >= 1")
        if self.name == "step" and not self.milestones:
            raise ValueError("a step schedule needs `milestones` (epochs)")
        return self


class LabelSmoothingConfig(_Strict):
    """`paper`: 1 - eps on the target, eps / (K - 1) on the others (Bag of Tricks, Szegedy et al.);
    `uniform`: (1 - eps) + eps / K on the target, eps / K on the others (torch's CrossEntropyLoss)."""

    eps: Real = Field(0.0, ge=0, lt=1)
    form: Literal["paper", "uniform"] = "paper"


class DistillConfig(_Strict):
    """Knowledge distillation (Hinton et al.; Bag of Tricks Sec. 5.4): the loss becomes
    CE(student, y) + weight * T^2 * CE(softmax(teacher / T), softmax(student / T))."""

    teacher: str = Field(description="the teacher's spec file (or zoo name)")
    checkpoint: str = Field(description="the teacher's weights: a netspec checkpoint or run directory")
    temperature: Real = Field(20.0, gt=0, description="T (the paper uses 20)")
    weight: Real = Field(1.0, ge=0, description="the distillation term's weight")
    ema: StrictBool = Field(False, description="use the checkpoint's EMA weights")


ALL_BUT_HEAD = "all_but_head"  # `freeze: all_but_head`: a linear probe (only the head trains)


def _init_shorthand(value: Any) -> Any:
    # `init: runs/resnet18` is short for {weights: runs/resnet18}
    return {"weights": value} if isinstance(value, str) else value


def _freeze_value(value: Any) -> Any:
    if isinstance(value, str) and value != ALL_BUT_HEAD:
        raise PydanticCustomError(
            "freeze",
            "a list of module paths or sections ([stem, layer1]), or all_but_head",
        )
    return value


class InitConfig(_Strict):
    """Start from pretrained weights instead of the spec's initialisation (fine-tuning). Applied when a
    run starts, never on resume. The head (the layers whose shapes depend on `classes`) keeps the
    spec's initialisation where the file cannot fill it (other classes) and is named in the output."""

    weights: str = Field(
        description="a netspec run directory or training checkpoint, a compiled .pt or .safetensors"
        " (netspec compile), or a torchvision/timm state_dict (paired as import-weights pairs it)"
    )
    strict: StrictBool = Field(
        True,
        description="every tensor but the head's must come from the file, and every file tensor be"
        " used; false: load what fits and list the rest",
    )
    reinit_head: Literal["auto"] | StrictBool = Field(
        "auto",
        description="auto: re-initialise the head where its shapes differ from the file's; true: always;"
        " false: never (a different head is an error)",
    )
    ema: StrictBool = Field(False, description="a netspec checkpoint's EMA weights")
    verify: str | None = Field(
        None,
        description="a torchvision/timm file: check the pairing against torchvision.models.NAME or"
        " timm:NAME (logits on a random batch; needs the file's classes)",
    )


LoggerName = Literal["csv", "jsonl", "tensorboard", "mlflow"]


def _default_loggers() -> list[LoggerName]:
    return ["csv"]


class MlflowConfig(_Strict):
    """The mlflow logger: where its runs are stored, and under which experiment."""

    tracking_uri: str | None = Field(
        None, description="default: a SQLite store in the run directory (RUN/mlflow.db)"
    )
    experiment: str | None = Field(None, description="default: the spec's name")


class Recipe(_Strict):
    """How to train a spec: the spec's `train:` section."""

    epochs: StrictInt = Field(10, ge=1, le=100_000)
    batch_size: StrictInt = Field(128, ge=1, le=1 << 20)
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    linear_lr_scaling: StrictBool = Field(False, description="lr = optimizer.lr * batch_size / 256")
    label_smoothing: LabelSmoothingConfig = Field(
        LabelSmoothingConfig(), description="a number is the eps of the paper's form"
    )
    mixup_alpha: Real = Field(0.0, ge=0, description="mixup with lambda ~ Beta(alpha, alpha); 0 = off")
    grad_clip: Real | None = Field(None, gt=0, description="clip the global gradient norm")
    ema_decay: Real | None = Field(None, gt=0, lt=1, description="exponential moving average of weights")
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: StrictBool = False
    compile: StrictBool = False
    seed: StrictInt = Field(0, ge=0, lt=2**63)
    data: str = Field(
        "digits", description="digits | synthetic[:N] | mnist:DIR | cifar10:DIR | imagefolder:DIR"
    )
    download: StrictBool = Field(False, description="let torchvision download mnist / cifar10 into DIR")
    augment: StrictBool = Field(
        True,
        description="training augmentation: digits shift, cifar10 crops and flips, imagefolder"
        " the `preset`'s (random-resized crops and flips; colour jitter and PCA lighting in `imagenet`)",
    )
    preset: Literal["imagenet", "torchvision"] | None = Field(
        None,
        description="imagefolder's transforms: imagenet (Bag of Tricks, the default) or torchvision"
        " (its reference scripts: crop and flip)",
    )
    val_fraction: Real = Field(0.2, gt=0, lt=1, description="digits / synthetic: held-out fraction")
    aux_weight: Real = Field(0.3, ge=0, description="weight of each auxiliary head's loss (GoogLeNet)")
    workers: StrictInt | None = Field(
        None,
        ge=0,
        le=256,
        description="DataLoader worker processes for data read from files (in-memory data sets need"
        " none); default: every core but one, up to 8",
    )
    threads: StrictInt | None = Field(
        None,
        ge=1,
        le=MAX_THREADS,
        description="torch intra-op threads; default: chosen from the per-step work and the free cores"
        " (1 for small models; OMP_NUM_THREADS when set)",
    )
    eval_batch_size: StrictInt | None = Field(None, ge=1, description="default: batch_size")
    distill: DistillConfig | None = Field(None, description="a teacher to distill from")
    plots: StrictBool = Field(True, description="loss.png, accuracy.png and lr.png in the run directory")
    loggers: list[LoggerName] = Field(
        default_factory=_default_loggers,
        description="where the metrics go besides the console: csv and jsonl (metrics.csv and"
        " metrics.jsonl, always written), tensorboard (pip install 'netspec[tensorboard]'), mlflow"
        " (pip install 'netspec[mlflow]')",
    )
    mlflow: MlflowConfig = Field(MlflowConfig(), description="the mlflow logger's settings")
    keep_checkpoints: StrictInt | None = Field(
        None,
        ge=0,
        description="keep the newest N per-epoch checkpoints (checkpoints/epoch_NNNN.pt); last.pt and"
        " best.pt are kept whatever N is; default: all",
    )
    init: Annotated[InitConfig | None, BeforeValidator(_init_shorthand)] = Field(
        None, description="pretrained weights to start from (a path is short for {weights: PATH})"
    )
    freeze: Annotated[list[str] | Literal["all_but_head"], BeforeValidator(_freeze_value)] = Field(
        default_factory=list,
        description="module paths or sections (stem, a stage's name, head) whose parameters do not train"
        " and whose batch norms keep their statistics; all_but_head: a linear probe",
    )

    @model_validator(mode="before")
    @classmethod
    def _scalar_smoothing(cls, data: Any) -> Any:
        # `label_smoothing: 0.1` is short for {eps: 0.1, form: paper}
        value = data.get("label_smoothing") if isinstance(data, Mapping) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            data = {**data, "label_smoothing": {"eps": value}}
        return data

    @property
    def lr(self) -> float:
        """The peak learning rate after linear scaling."""
        scale = self.batch_size / REFERENCE_BATCH if self.linear_lr_scaling else 1.0
        return self.optimizer.lr * scale


_OWNERS: dict[str, type[BaseModel]] = {
    "optimizer": OptimizerConfig,
    "schedule": ScheduleConfig,
    "label_smoothing": LabelSmoothingConfig,
    "distill": DistillConfig,
    "mlflow": MlflowConfig,
    "init": InitConfig,
}


def validate_recipe(tree: Any, raw: Any = None, prefix: tuple[str | int, ...] = ("train",)) -> Recipe:
    """A Recipe from a `train:` mapping; every problem is a SpecError located in `raw` (the spec's
    positioned tree) under `prefix`."""
    try:
        return Recipe.model_validate(dict(tree or {}))
    except ValidationError as exc:
        problems = []
        for loc, err in clean_pydantic_errors(exc.errors()):
            path = (*prefix, *loc)
            msg, hint, where = err["msg"], None, locate(raw, path) if raw is not None else None
            if err["type"] == "extra_forbidden" and loc:
                owner = _OWNERS.get(str(loc[0]), Recipe) if len(loc) > 1 else Recipe
                msg = f"unknown field '{loc[-1]}'"
                hint = did_you_mean(str(loc[-1]), owner.model_fields) or "allowed: " + ", ".join(
                    owner.model_fields
                )
                where = locate_key(raw, path) if raw is not None else None
            elif err["type"] == "missing" and loc:
                msg = f"missing required field '{loc[-1]}'"
            elif "input" in err and not isinstance(err["input"], dict | list):
                msg = f"{msg} (got {err['input']!r})"
            problems.append(Problem(msg, path, where, hint))
        raise SpecError(problems) from None


def recipe_from_spec(spec: Any) -> Recipe:
    """The validated recipe of a loaded Spec (its `train:` section, overrides applied)."""
    raw = spec.raw
    return validate_recipe(spec.train, raw)


def check_training_memory(spec: Any, recipe: Recipe, device: Any = None) -> None:
    """Refuse (SpecSizeError) a training step whose static estimate exceeds the memory cap: weights,
    gradients, optimizer state and EMA copy, and a batch's activations with their gradients."""
    from ..analysis import analyze
    from ..memory import check_memory, training_estimate

    need = training_estimate(
        analyze(spec), recipe.batch_size, recipe.optimizer.name, recipe.ema_decay is not None
    )
    check_memory(spec, need, device)


def train_overrides(
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    data: str | None = None,
    seed: int | None = None,
    download: bool = False,
    threads: int | None = None,
    workers: int | None = None,
) -> list[str]:
    """Command-line shortcuts (`--epochs 3`) as `--set` overrides (`train.epochs=3`), to pass to
    load_spec with the user's own `--set`s after them."""
    import json

    pairs = {
        "train.epochs": epochs,
        "train.batch_size": batch_size,
        "train.optimizer.lr": lr,
        "train.data": data,
        "train.seed": seed,
        "train.download": True if download else None,
        "train.threads": threads,
        "train.workers": workers,
    }
    # JSON is YAML: a path like `mnist:/d` must stay a string, not become a mapping
    return [f"{k}={json.dumps(v)}" for k, v in pairs.items() if v is not None]
