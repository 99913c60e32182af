"""MLflow, through its public client API (mlflow.tracking.MlflowClient): a run per training run, in
the recipe's `mlflow.tracking_uri` (default: a SQLite store in the run directory, RUN/mlflow.db, with
artifacts in RUN/mlartifacts: MLflow 3 refuses its old file store unless told to) under
the experiment `mlflow.experiment` (default: the spec's name). It gets the recipe as parameters
(flattened: `optimizer.lr`), the spec as the artifact spec.yaml, train/loss and train/lr every log
step, and every epoch's metrics at the training step. A resumed run continues the same MLflow run
(its id is kept in RUN/mlflow_run_id)."""

from __future__ import annotations

from typing import Any

from .. import checkpoint as ckpt
from ..progress import Event
from . import RunInfo

RUN_ID_FILE = "mlflow_run_id"
DATABASE = "mlflow.db"
ARTIFACTS = "mlartifacts"  # never MLflow's default, ./mlruns of the working directory

_EPOCH_METRICS = (
    "train_loss", "lr", "images_per_s", "val_loss", "val_top1", "val_top5",
    "ema_val_loss", "ema_val_top1", "ema_val_top5",
)  # fmt: skip


def _flat(tree: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(tree, dict):
        out: dict[str, str] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: str(tree)[:500]}  # MLflow's limit on a parameter's value


class MlflowLogger:
    def __init__(self, run: RunInfo):
        from mlflow.tracking import MlflowClient

        config = run.recipe.mlflow
        uri = config.tracking_uri or f"sqlite:///{(run.out / DATABASE).resolve()}"
        self.client: Any = MlflowClient(tracking_uri=uri)
        self.run_id = self._resumed(run)
        if self.run_id is None:
            name = config.experiment or run.name
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else self.client.create_experiment(name, (run.out / ARTIFACTS).resolve().as_uri())
            )
            created = self.client.create_run(experiment_id, run_name=run.out.name)
            self.run_id = created.info.run_id
            ckpt.atomic_write_bytes(run.out / RUN_ID_FILE, f"{self.run_id}\n".encode())
            for key, value in _flat(run.recipe.model_dump(mode="json")).items():
                self.client.log_param(self.run_id, key, value)
            self.client.log_text(self.run_id, run.spec_text, "spec.yaml")
        self.finished = False

    def _resumed(self, run: RunInfo) -> str | None:
        """The MLflow run of the training run being resumed, when the store still has it."""
        if run.resumed_step is None:
            return None
        try:
            run_id = (run.out / RUN_ID_FILE).read_text().strip()
            self.client.get_run(run_id)
        except Exception:  # no id kept, or a store without it: a new MLflow run
            return None
        return run_id

    def on_event(self, event: Event) -> None:
        kind = event["event"]
        if kind == "step":
            self.client.log_metric(self.run_id, "train/loss", event["loss"], step=event["step"])
            self.client.log_metric(self.run_id, "train/lr", event["lr"], step=event["step"])
        elif kind == "epoch":
            for key in _EPOCH_METRICS:
                value = event.get(key)
                if isinstance(value, int | float):
                    self.client.log_metric(self.run_id, key, value, step=event["step"])
        elif kind == "end":
            self.finished = True

    def close(self) -> None:
        # a run that ended without its end event failed or was interrupted; resume continues it
        self.client.set_terminated(self.run_id, "FINISHED" if self.finished else "KILLED")
