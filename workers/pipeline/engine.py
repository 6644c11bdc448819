"""The training and evaluation engine: a plain PyTorch loop over uint8 tensors, reporting through callbacks."""

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F

from workers.pipeline import device as devices
from workers.pipeline import strategies
from workers.pipeline.backbones import Grafted
from workers.pipeline.datasets import ImageSet
from workers.pipeline.errors import PipelineError, TrainingDiverged
from workers.pipeline.images import Preprocessing


@dataclass
class TrainConfig:
    """Everything the engine needs to know about one training run."""

    epochs: int = 3
    batch_size: int = 64
    strategy: str = "finetune"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    backbone_lr_mult: float = 0.1
    seed: int = 0
    device: str = "auto"
    amp: bool = True


class Callbacks(Protocol):
    """What the engine reports while it runs; the caller decides where the numbers go."""

    def on_progress(self, *, epoch: int, step: int, total_steps: int) -> None: ...

    def on_epoch_end(self, *, epoch: int, metrics: dict) -> None: ...


class NullCallbacks:
    """Callbacks that record nothing."""

    def on_progress(self, *, epoch: int, step: int, total_steps: int) -> None:
        pass

    def on_epoch_end(self, *, epoch: int, metrics: dict) -> None:
        pass


@dataclass
class FitResult:
    """The final metrics and per-epoch history of a finished run."""

    metrics: dict
    history: list[dict] = field(default_factory=list)


def make_optimizer(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW over `groups`."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    raise PipelineError(f"unknown optimizer {config.optimizer!r}; choose 'sgd' or 'adamw'")


def batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Index batches over `n` items: shuffled when a generator is given, in order otherwise."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return list(order.split(batch_size))


@torch.no_grad()
def evaluate(
    grafted: Grafted, data: ImageSet, preprocessing: Preprocessing, *, batch_size: int, device: torch.device
) -> dict:
    """Loss and top-1 accuracy of the model on `data`."""
    if len(data) == 0:
        return {}
    grafted.model.eval()
    total_loss, correct = 0.0, 0
    for idx in batches(len(data), batch_size, None):
        x = preprocessing.normalize(devices.to_device(data.images[idx], device))
        y = devices.to_device(data.labels[idx], device)
        with devices.autocast(device, True):
            logits = grafted.model(x)
        total_loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    return {"loss": total_loss / len(data), "accuracy": correct / len(data)}


def fit(
    grafted: Grafted,
    train: ImageSet,
    val: ImageSet,
    preprocessing: Preprocessing,
    config: TrainConfig,
    callbacks: Callbacks | None = None,
) -> FitResult:
    """Train `grafted` on `train` for `config.epochs`, evaluating on `val` after every epoch."""
    callbacks = callbacks or NullCallbacks()
    if len(train) == 0:
        raise PipelineError("the training split is empty; lower val_fraction or add images")
    torch.manual_seed(config.seed)
    device = devices.resolve_device(config.device)
    model = grafted.model.to(device)
    groups = strategies.param_groups(
        grafted, config.strategy, lr=config.lr, backbone_lr_mult=config.backbone_lr_mult
    )
    optimizer = make_optimizer(groups, config)
    scaler = devices.grad_scaler(device, config.amp)
    images = devices.prepare_host(train.images, device)
    labels = devices.prepare_host(train.labels, device)
    gen = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    history: list[dict] = []
    step = 0
    for epoch in range(1, config.epochs + 1):
        strategies.set_train_mode(grafted)
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
        for idx in batches(len(train), config.batch_size, gen):
            x = preprocessing.normalize(devices.to_device(images[idx], device))
            y = devices.to_device(labels[idx], device)
            with devices.autocast(device, config.amp):
                loss = F.cross_entropy(model(x), y)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"training diverged: the loss became {loss.item()} at epoch {epoch}, step {step + 1}; "
                    f"lower optimizer.lr (now {config.lr})"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            callbacks.on_progress(epoch=epoch, step=step, total_steps=total_steps)
        val_metrics = evaluate(grafted, val, preprocessing, batch_size=config.batch_size * 2, device=device)
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / seen,
            "val_loss": val_metrics.get("loss"),
            "val_accuracy": val_metrics.get("accuracy"),
            "lr": lrs["head"],
            "lrs": lrs,
            "epoch_seconds": time.perf_counter() - started,
        }
        history.append(row)
        callbacks.on_epoch_end(epoch=epoch, metrics=row)
    final = {k: history[-1][k] for k in ("train_loss", "val_loss", "val_accuracy")}
    return FitResult(metrics=final, history=history)
