"""Unsupervised domain adaptation training: source cross-entropy + λ · alignment of source and target features.

    L = CE(h(f(x_s)), y_s) + λ(p) · D(f(x_s), f(x_t)),   λ(p) = weight · (2 / (1 + exp(−γ p)) − 1) with the ramp,

where f is the backbone (plus the optional bottleneck), h the classifier, p the training progress in [0, 1] and D
one of MMD (multi-kernel; optionally joint with the softmax outputs, JMMD), DANN's adversarial domain loss (its
gradient-reversal coefficient follows the ramp) or CORAL. Target labels never reach this module: it receives
target images only; labelled target data is evaluated separately.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from workers.pipeline import device as devices
from workers.pipeline.adaptation.coral import CoralLoss
from workers.pipeline.adaptation.dann import DomainAdversarialLoss, DomainDiscriminator
from workers.pipeline.adaptation.mmd import JointMMDLoss, MMDLoss
from workers.pipeline.adaptation.schedule import ramp
from workers.pipeline.backbones import Grafted
from workers.pipeline.datasets import ImageSet
from workers.pipeline.engine import Callbacks, TrainConfig, Trainer, batches, evaluate
from workers.pipeline.errors import PipelineError
from workers.pipeline.features import headless
from workers.pipeline.images import Preprocessing

METHODS = ("none", "mmd", "dann", "coral")


@dataclass
class AdaptationConfig:
    """The adaptation knobs of an `adapt` job."""

    method: str = "mmd"
    weight: float = 1.0
    ramp: bool = True
    gamma: float = 10.0
    estimator: str = "unbiased"
    joint: bool = False
    discrepancy_sample: int = 256

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise PipelineError(f"unknown adaptation method {self.method!r}; choose one of {list(METHODS)}")


class AdaptTrainer(Trainer):
    """A `Trainer` whose loss also aligns source and target features."""

    def __init__(self, grafted: Grafted, preprocessing: Preprocessing, config: TrainConfig,
                 adaptation: AdaptationConfig, target: ImageSet, target_eval: ImageSet | None = None,
                 callbacks: Callbacks | None = None) -> None:
        config.feature_cache = False
        super().__init__(grafted, preprocessing, config, callbacks)
        self.adaptation = adaptation
        self.target_images = target.images  # images only: target labels cannot leak into training
        self.target_eval = target_eval
        self._target_order = torch.Generator().manual_seed(config.seed + 1)
        self._target_batches: list[torch.Tensor] = []
        self._sums = self._fresh_sums()
        self.alignment = self._make_alignment()
        self._discrepancy = MMDLoss(estimator="biased")
        self._probe_source: torch.Tensor | None = None

    def _make_alignment(self):
        method = self.adaptation.method
        if method == "mmd":
            return JointMMDLoss(estimator=self.adaptation.estimator) if self.adaptation.joint \
                else MMDLoss(estimator=self.adaptation.estimator)
        if method == "coral":
            return CoralLoss()
        if method == "dann":
            width = self._feature_width()
            return DomainAdversarialLoss(DomainDiscriminator(width, hidden=min(1024, max(64, width)))).to(self.device)
        return None

    def _feature_width(self) -> int:
        head = self.grafted.head
        last = head[-1] if isinstance(head, torch.nn.Sequential) else head
        return last.in_features

    def extra_param_groups(self) -> list[dict]:
        if self.adaptation.method != "dann":
            return []
        lr = self.config.strategy.lr
        return [{"name": "domain_discriminator", "params": list(self.alignment.parameters()), "lr": lr,
                 "base_lr": lr, "weight_decay": self.config.strategy.weight_decay}]

    def next_target(self, n: int) -> torch.Tensor:
        """The next target batch from an endless, independently shuffled iterator."""
        if not self._target_batches:
            self._target_batches = batches(len(self.target_images), n, self._target_order)
            self._target_batches = [b for b in self._target_batches if len(b) == n] or self._target_batches
        return self.target_images[self._target_batches.pop(0)]

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features the head sees (after the bottleneck, if any) and the logits."""
        head = self.grafted.head
        with headless(self.grafted):
            feats = self.grafted.model(x)
        if isinstance(head, torch.nn.Sequential):
            feats = head[:-1](feats)
            return feats, head[-1](feats)
        return feats, head(feats)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, *, progress: float) -> torch.Tensor:
        cfg = self.adaptation
        factor = ramp(progress, cfg.gamma) if cfg.ramp else 1.0
        if cfg.method == "none":
            loss = F.cross_entropy(self.grafted.model(x), y, label_smoothing=self.config.label_smoothing)
            self._record(loss, None, 0.0)
            return loss
        xt = self.batch_input(self.next_target(len(x)))
        feats, logits = self.features_and_logits(torch.cat([x, xt]))
        fs, ft = feats[: len(x)].float(), feats[len(x):].float()
        loss = F.cross_entropy(logits[: len(x)], y, label_smoothing=self.config.label_smoothing)
        if cfg.method == "dann":
            self.alignment.grl.lambd = factor
            align, lam = self.alignment(fs, ft), cfg.weight
        elif cfg.method == "mmd" and cfg.joint:
            probs = F.softmax(logits.float(), dim=1)
            align, lam = self.alignment(fs, ft, probs[: len(x)], probs[len(x):]), cfg.weight * factor
        else:
            align, lam = self.alignment(fs, ft), cfg.weight * factor
        self._record(loss, align, lam * (factor if cfg.method == "dann" else 1.0))
        return loss + lam * align

    def _record(self, source_loss: torch.Tensor, align: torch.Tensor | None, lam: float) -> None:
        self._sums["source_loss"] += source_loss.item()
        self._sums["adaptation_loss"] += align.item() if align is not None else 0.0
        self._sums["lambda"] += lam
        self._sums["steps"] += 1

    @torch.no_grad()
    def discrepancy(self, source: ImageSet) -> float:
        """MMD² (biased, multi-kernel) between source and target features on a fixed held-out sample."""
        n = min(self.adaptation.discrepancy_sample, len(source), len(self.target_images))
        if n < 2:
            return float("nan")
        self.grafted.model.eval()
        fixed = torch.Generator().manual_seed(12345)
        si = torch.randperm(len(source), generator=fixed)[:n]
        ti = torch.randperm(len(self.target_images), generator=fixed)[:n]
        pre = self.preprocessing
        fs, _ = self.features_and_logits(pre.normalize(devices.to_device(source.images[si], self.device)))
        ft, _ = self.features_and_logits(pre.normalize(devices.to_device(self.target_images[ti], self.device)))
        return float(self._discrepancy(fs.float(), ft.float()))

    def extra_state(self) -> dict:
        state = {"target_order": self._target_order.get_state(), "target_batches": list(self._target_batches)}
        if self.adaptation.method == "dann":
            state["discriminator"] = {k: v.detach().cpu() for k, v in self.alignment.state_dict().items()}
        return state

    def load_extra_state(self, state: dict) -> None:
        if not state:
            return
        self._target_order.set_state(state["target_order"])
        self._target_batches = list(state["target_batches"])
        if "discriminator" in state:
            self.alignment.load_state_dict(state["discriminator"])

    @staticmethod
    def _fresh_sums() -> dict:
        return {"source_loss": 0.0, "adaptation_loss": 0.0, "lambda": 0.0, "steps": 0}

    def fit(self, train: ImageSet, val: ImageSet, test: ImageSet | None = None, resume: dict | None = None):
        """Train with adaptation; the final metrics add a full report on labelled target data, if any."""
        self._probe = val if len(val) else train
        result = super().fit(train, val, test, resume=resume)
        if self.target_eval is not None and len(self.target_eval):
            last = {k: v.detach().to("cpu", copy=True) for k, v in self.grafted.model.state_dict().items()}
            if result.best_state is not None:
                self.grafted.model.load_state_dict(result.best_state)
            result.metrics["target"] = evaluate(self.grafted, self.target_eval, self.preprocessing,
                                                batch_size=self.config.batch_size * 2, device=self.device,
                                                amp=self.config.amp)
            result.metrics["target_accuracy"] = result.metrics["target"]["accuracy"]
            self.grafted.model.load_state_dict(last)
        return result

    def epoch_metrics(self) -> dict:
        steps = max(1, self._sums["steps"])
        row = {"source_loss": self._sums["source_loss"] / steps,
               "adaptation_loss": self._sums["adaptation_loss"] / steps, "lambda": self._sums["lambda"] / steps,
               "domain_discrepancy": self.discrepancy(self._probe)}
        self._sums = self._fresh_sums()
        if self.target_eval is not None and len(self.target_eval):
            logits = self._target_logits()
            row["target_accuracy"] = (logits.argmax(1) == self.target_eval.labels).double().mean().item()
        return row

    @torch.no_grad()
    def _target_logits(self) -> torch.Tensor:
        from workers.pipeline.engine import predict_logits

        return predict_logits(self.grafted.model, self.target_eval, self.preprocessing,
                              batch_size=self.config.batch_size * 2, device=self.device, amp=self.config.amp)
