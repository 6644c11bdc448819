"""The training and evaluation engine: a plain PyTorch loop over cached uint8 tensors, reporting through callbacks."""

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from workers.pipeline import augment, features
from workers.pipeline import device as devices
from workers.pipeline.backbones import Grafted
from workers.pipeline.datasets import ImageSet
from workers.pipeline.errors import PipelineError, TrainingDiverged
from workers.pipeline.images import Preprocessing
from workers.pipeline.metrics import classification_report
from workers.pipeline.schedules import Schedule
from workers.pipeline.strategies import Plan, StrategyConfig

MONITORS = {"val_accuracy": max, "val_loss": min}


@dataclass
class TrainConfig:
    """Everything the engine needs to know about one training run."""

    epochs: int = 3
    batch_size: int = 64
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    schedule: dict = field(default_factory=dict)
    label_smoothing: float = 0.0
    grad_clip_norm: float | str | None = "auto"  # "auto": 1.0 through frozen BatchNorm statistics (Trainer.clip_norm)
    monitor: str = "val_accuracy"
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    augmentation: str = "none"
    feature_cache: bool = True
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    checkpoint_every: int = 0  # epochs between two training-state checkpoints to `on_checkpoint` (0: none)


class Callbacks(Protocol):
    """What the engine reports while it runs; the caller decides where the numbers go."""

    def on_progress(self, *, epoch: int, step: int, total_steps: int) -> None: ...

    def on_epoch_end(self, *, epoch: int, metrics: dict) -> None: ...

    def on_checkpoint(self, *, epoch: int, state: dict) -> None:
        """A training-state checkpoint (see `Trainer.fit`'s `resume`): keep it to resume after a crash."""


class NullCallbacks:
    """Callbacks that record nothing."""

    def on_progress(self, *, epoch: int, step: int, total_steps: int) -> None:
        pass

    def on_epoch_end(self, *, epoch: int, metrics: dict) -> None:
        pass

    def on_checkpoint(self, *, epoch: int, state: dict) -> None:
        pass


@dataclass
class FitResult:
    """Final metrics, per-epoch history, and the best epoch's weights (the model itself holds the last)."""

    metrics: dict
    history: list[dict]
    best_state: dict[str, torch.Tensor] | None
    best_epoch: int


def seed_everything(seed: int) -> None:
    """Seed PyTorch's generators so the same spec and seed give the same run on the CPU."""
    torch.manual_seed(seed)


def make_optimizer(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW over `groups`."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.strategy.lr, momentum=config.momentum, nesterov=config.nesterov)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.strategy.lr)
    raise PipelineError(f"unknown optimizer {config.optimizer!r}; choose 'sgd' or 'adamw'")


def batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Index batches over `n` items: shuffled when a generator is given, in order otherwise."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return list(order.split(batch_size))


@torch.no_grad()
def predict_logits(model: nn.Module, data: ImageSet, preprocessing: Preprocessing, *, batch_size: int,
                   device: torch.device, amp: bool = True) -> torch.Tensor:
    """Logits of `model` (in eval mode) for every image of `data`."""
    model.eval()
    out = []
    for idx in batches(len(data), batch_size, None):
        x = preprocessing.normalize(devices.to_device(data.images[idx], device))
        with devices.autocast(device, amp):
            out.append(model(devices.channels_last(x, device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0, len(data.classes))


def evaluate(grafted: Grafted, data: ImageSet, preprocessing: Preprocessing, *, batch_size: int,
             device: torch.device, amp: bool = True) -> dict:
    """Full classification report (loss, top-1, top-5, per-class P/R/F1, confusion matrix) on `data`."""
    if len(data) == 0:
        return {}
    logits = predict_logits(grafted.model, data, preprocessing, batch_size=batch_size, device=device, amp=amp)
    return classification_report(logits, data.labels, data.classes)


class Trainer:
    """One training run of a grafted model."""

    def __init__(self, grafted: Grafted, preprocessing: Preprocessing, config: TrainConfig,
                 callbacks: Callbacks | None = None) -> None:
        self.grafted, self.preprocessing, self.config = grafted, preprocessing, config
        self.callbacks = callbacks or NullCallbacks()
        self.device = devices.resolve_device(config.device)
        self.plan = Plan(grafted, config.strategy)
        self.augmentation = augment.make_augmentation(config.augmentation, preprocessing.image_size)
        if config.monitor not in MONITORS:
            raise PipelineError(f"unknown monitor {config.monitor!r}; choose one of {list(MONITORS)}")
        self.clip_norm = self._clip_norm()

    def _clip_norm(self) -> float | None:
        """The gradient-norm clip in force: `auto` clips at 1.0 only where frozen BatchNorm statistics sit among
        training layers (fine-tuning a pretrained backbone), which otherwise amplify gradients until SGD diverges."""
        clip = self.config.grad_clip_norm
        if clip != "auto":
            return clip
        through_frozen_bn = self.plan.batchnorm_frozen and self.config.strategy.strategy != "feature_extraction"
        return 1.0 if through_frozen_bn else None

    def uses_feature_cache(self) -> bool:
        """Frozen backbone and no augmentation: the backbone's features are computed once, not every epoch."""
        cfg = self.config
        return cfg.feature_cache and cfg.strategy.strategy == "feature_extraction" and self.augmentation is None

    def fit(self, train: ImageSet, val: ImageSet, test: ImageSet | None = None, resume: dict | None = None) -> FitResult:
        """Train for `config.epochs` (or until early stopping), evaluating on `val` after every epoch.

        Every `checkpoint_every` epochs the callbacks receive the full training state (model, optimizer, grad
        scaler, random generators, step, history, best weights so far); passing it back as `resume` continues
        from the epoch after it as if the run had never stopped.
        """
        cfg = self.config
        if len(train) == 0:
            raise PipelineError("the training split is empty; lower val_fraction or add images")
        seed_everything(cfg.seed)
        model = self.grafted.model.to(self.device)
        if self.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        total_steps = steps_per_epoch * cfg.epochs
        schedule = Schedule(total_steps=total_steps, steps_per_epoch=steps_per_epoch, **cfg.schedule)
        source = self._feature_source(train, val) if self.uses_feature_cache() else None
        gen = torch.Generator().manual_seed(cfg.seed)
        scaler = devices.grad_scaler(self.device, cfg.amp)
        images = devices.prepare_host(train.images, self.device)
        labels = devices.prepare_host(train.labels, self.device)
        optimizer, joined = None, set()
        history: list[dict] = []
        best_value, best_epoch, best_state, stale = None, 0, None, 0
        step, first_epoch = 0, 1
        if resume is not None:
            model.load_state_dict(resume["model"])
            for epoch in range(1, resume["epoch"] + 1):  # the optimizer's groups, joined in the same order
                optimizer = self._join_groups(epoch, optimizer, joined)
            optimizer.load_state_dict(resume["optimizer"])
            if resume.get("scaler"):
                scaler.load_state_dict(resume["scaler"])
            gen.set_state(resume["generator"])
            torch.set_rng_state(resume["rng"])
            step, history, first_epoch = resume["step"], list(resume["history"]), resume["epoch"] + 1
            best_value, best_epoch, stale = resume["best_value"], resume["best_epoch"], resume["stale"]
            best_state = resume.get("best_state") or (
                {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                if best_epoch == resume["epoch"] else None)
            self.load_extra_state(resume.get("extra") or {})
        for epoch in range(first_epoch, cfg.epochs + 1):
            optimizer = self._join_groups(epoch, optimizer, joined)
            self.plan.set_train_mode(epoch)
            _set_lr(optimizer, schedule.factor(step))
            lrs = {pg["name"]: pg["lr"] for pg in optimizer.param_groups}
            started, seen, loss_sum = time.perf_counter(), 0, 0.0
            for idx in batches(len(train), cfg.batch_size, gen):
                _set_lr(optimizer, schedule.factor(step))
                y = devices.to_device(labels[idx], self.device)
                if source is not None:
                    logits_fn = lambda: self.grafted.head(source[0][idx])  # noqa: E731
                else:
                    x = self.batch_input(images[idx])
                with devices.autocast(self.device, cfg.amp):
                    if source is not None:
                        loss = F.cross_entropy(logits_fn(), y, label_smoothing=cfg.label_smoothing)
                    else:
                        loss = self.training_loss(x, y, progress=step / total_steps)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"training diverged: the loss became {loss.item()} at epoch {epoch}, step {step + 1}; "
                        f"lower optimizer.lr (now {cfg.strategy.lr}) or set grad_clip_norm"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if self.clip_norm:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_([p for pg in optimizer.param_groups for p in pg["params"]],
                                             self.clip_norm)
                scaler.step(optimizer)
                scaler.update()
                step += 1
                seen += len(idx)
                loss_sum += loss.item() * len(idx)
                self.callbacks.on_progress(epoch=epoch, step=step, total_steps=total_steps)
            val_metrics = self._validate(val, source)
            row = {"epoch": epoch, "train_loss": loss_sum / seen, "val_loss": val_metrics.get("loss"),
                   "val_accuracy": val_metrics.get("accuracy"), "lr": lrs["head"], "lrs": lrs,
                   "epoch_seconds": time.perf_counter() - started}
            if "top5_accuracy" in val_metrics:
                row["val_top5_accuracy"] = val_metrics["top5_accuracy"]
            row.update(self.epoch_metrics())
            history.append(row)
            self.callbacks.on_epoch_end(epoch=epoch, metrics=row)
            value = row.get(cfg.monitor)
            if value is not None and (best_value is None or _improves(cfg.monitor, value, best_value,
                                                                       cfg.early_stopping_min_delta)):
                best_value, best_epoch, stale = value, epoch, 0
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            else:
                stale += 1
            stop = bool(cfg.early_stopping_patience and stale >= cfg.early_stopping_patience)
            if cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0 and epoch < cfg.epochs and not stop:
                self.callbacks.on_checkpoint(epoch=epoch, state={
                    "epoch": epoch, "step": step, "history": history, "model": _cpu(model.state_dict()),
                    "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                    "generator": gen.get_state(), "rng": torch.get_rng_state(), "best_value": best_value,
                    "best_epoch": best_epoch, "stale": stale,
                    "best_state": best_state if best_epoch != epoch else None, "extra": self.extra_state()})
            if stop:
                break
        return self._finish(history, best_state, best_epoch, val, test)

    def _join_groups(self, epoch: int, optimizer: torch.optim.Optimizer | None, joined: set) -> torch.optim.Optimizer:
        """Apply the plan for `epoch`; groups that start training now join the optimizer (created on first use)."""
        groups = self.plan.apply(epoch)
        fresh = [g for g in groups if g.name not in joined]
        new_groups = [pg for g in fresh for pg in self.plan.optimizer_groups(g)]
        if optimizer is None:
            optimizer = make_optimizer(new_groups + self.extra_param_groups(), self.config)
        else:
            for pg in new_groups:
                optimizer.add_param_group(pg)
        joined |= {g.name for g in fresh}
        return optimizer

    def extra_state(self) -> dict:
        """State outside the model and optimizer that a resumed run needs (e.g. a domain discriminator)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what `extra_state` returned."""

    def batch_input(self, images: torch.Tensor) -> torch.Tensor:
        """A uint8 batch → augmented, normalized model input on the device."""
        x = augment.apply(self.augmentation, images)
        return devices.channels_last(self.preprocessing.normalize(devices.to_device(x, self.device)), self.device)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, *, progress: float) -> torch.Tensor:
        """The loss of one step (cross-entropy here; domain adaptation adds its alignment term)."""
        return F.cross_entropy(self.grafted.model(x), y, label_smoothing=self.config.label_smoothing)

    def extra_param_groups(self) -> list[dict]:
        """Parameters outside the model that train too (e.g. a domain discriminator)."""
        return []

    def epoch_metrics(self) -> dict:
        """Extra figures for the epoch's metrics row."""
        return {}

    def _feature_source(self, train: ImageSet, val: ImageSet):
        """Backbone features of the train and val images, computed once with the backbone in eval mode."""
        model = self.grafted.model
        self.plan.apply(1)
        with features.headless(self.grafted):
            kw = {"batch_size": max(self.config.batch_size, 256), "device": self.device, "amp": self.config.amp}
            train_f = predict_logits(model, train, self.preprocessing, **kw).to(self.device)
            val_f = predict_logits(model, val, self.preprocessing, **kw).to(self.device) if len(val) else None
        return train_f, val_f

    def _validate(self, val: ImageSet, source) -> dict:
        if len(val) == 0:
            return {}
        if source is not None and source[1] is not None:
            self.grafted.head.eval()
            with torch.no_grad():
                logits = self.grafted.head(source[1]).float().cpu()
            return {"loss": F.cross_entropy(logits, val.labels).item(),
                    "accuracy": (logits.argmax(1) == val.labels).double().mean().item()}
        report = evaluate(self.grafted, val, self.preprocessing, batch_size=self.config.batch_size * 2,
                          device=self.device, amp=self.config.amp)
        return {k: report[k] for k in ("loss", "accuracy", "top5_accuracy") if k in report}

    def _finish(self, history, best_state, best_epoch, val, test) -> FitResult:
        """Evaluate the best weights in full on val and test; the model keeps the last weights."""
        last_state = None
        if best_state is not None and best_epoch != len(history):
            last_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.grafted.model.state_dict().items()})
            self.grafted.model.load_state_dict(best_state)
        kw = {"batch_size": self.config.batch_size * 2, "device": self.device, "amp": self.config.amp}
        metrics = {
            "train_loss": history[-1]["train_loss"],
            "val_loss": history[best_epoch - 1]["val_loss"] if best_epoch else None,
            "val_accuracy": history[best_epoch - 1]["val_accuracy"] if best_epoch else None,
            "best_epoch": best_epoch or len(history),
            "epochs_run": len(history),
            "val": evaluate(self.grafted, val, self.preprocessing, **kw),
        }
        if test is not None and len(test):
            metrics["test"] = evaluate(self.grafted, test, self.preprocessing, **kw)
            metrics["test_accuracy"] = metrics["test"]["accuracy"]
        if last_state is not None:
            self.grafted.model.load_state_dict(last_state)
        return FitResult(metrics=metrics, history=history, best_state=best_state, best_epoch=best_epoch)


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for pg in optimizer.param_groups:
        pg["lr"] = pg["base_lr"] * factor


def _improves(monitor: str, value: float, best: float, min_delta: float) -> bool:
    return value > best + min_delta if MONITORS[monitor] is max else value < best - min_delta


def fit(grafted: Grafted, train: ImageSet, val: ImageSet, preprocessing: Preprocessing, config: TrainConfig,
        callbacks: Callbacks | None = None, test: ImageSet | None = None) -> FitResult:
    """Train `grafted` on `train`, validating on `val` (shortcut for `Trainer(...).fit(...)`)."""
    return Trainer(grafted, preprocessing, config, callbacks).fit(train, val, test)
