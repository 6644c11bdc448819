"""Transfer strategies: which parameters train when, at which learning rate, and how norm layers behave.

- `feature_extraction`: the backbone is frozen (BatchNorm statistics and dropout too, i.e. eval mode); the head trains.
- `finetune`: everything trains; the head at `lr`, a pretrained backbone at `lr × backbone_lr_mult`, each block
  below the top one further × `layer_decay`; optionally the first `head_warmup_epochs` train the head alone.
- `gradual_unfreeze`: the head trains alone at first; every `unfreeze_every` epochs the next block from the top
  joins the optimizer at its own learning rate.

`batchnorm`: `freeze` keeps BatchNorm running statistics fixed (modules in eval mode; their affine parameters still
train), `train` updates them; `auto` (default) freezes them when the backbone is pretrained, because statistics
re-estimated from small fine-tuning batches drift away from the ones the pretrained weights were trained with,
and trains them from scratch, where there are no statistics to keep.
"""

from dataclasses import dataclass, field

from torch import nn

from workers.pipeline.backbones import Grafted
from workers.pipeline.blocks import backbone_blocks
from workers.pipeline.errors import PipelineError

STRATEGIES = ("feature_extraction", "finetune", "gradual_unfreeze")
BATCHNORM_MODES = ("auto", "freeze", "train")
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


@dataclass
class StrategyConfig:
    """The strategy knobs of a job."""

    strategy: str = "finetune"
    lr: float = 0.01
    backbone_lr_mult: float = 0.1
    layer_decay: float = 1.0
    head_warmup_epochs: int = 0
    unfreeze_every: int = 1
    batchnorm: str = "auto"
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise PipelineError(f"unknown strategy {self.strategy!r}; choose one of {list(STRATEGIES)}")
        if self.batchnorm not in BATCHNORM_MODES:
            raise PipelineError(f"unknown batchnorm mode {self.batchnorm!r}; choose one of {list(BATCHNORM_MODES)}")


@dataclass
class Group:
    """Parameters that share a learning rate and are frozen or unfrozen together."""

    name: str
    lr: float
    params: list[nn.Parameter]
    modules: list[nn.Module] = field(default_factory=list)


class Plan:
    """The schedule of what trains: the head group, and backbone groups ordered top (next to the head) first."""

    def __init__(self, grafted: Grafted, config: StrategyConfig) -> None:
        self.grafted, self.config = grafted, config
        self.head = Group("head", config.lr, grafted.head_parameters(), [grafted.head])
        base = config.lr * config.backbone_lr_mult if grafted.pretrained else config.lr
        per_block = config.strategy == "gradual_unfreeze" or config.layer_decay != 1.0
        if per_block:
            blocks = list(reversed(backbone_blocks(grafted)))
            self.backbone = [
                Group(f"block:{b.name}", base * config.layer_decay**depth, b.params, b.modules)
                for depth, b in enumerate(blocks)
            ]
        else:
            self.backbone = [Group("backbone", base, grafted.backbone_parameters(), grafted.backbone_modules())]
        self._no_decay = _no_decay_ids(grafted.model)
        self.batchnorm_frozen = config.batchnorm == "freeze" or (config.batchnorm == "auto" and grafted.pretrained)

    def trainable(self, epoch: int) -> list[Group]:
        """Backbone groups that train in `epoch` (1-based)."""
        cfg = self.config
        if cfg.strategy == "feature_extraction":
            return []
        if cfg.strategy == "finetune":
            return [] if epoch <= cfg.head_warmup_epochs else list(self.backbone)
        return self.backbone[: (epoch - 1) // cfg.unfreeze_every]

    def apply(self, epoch: int) -> list[Group]:
        """Set `requires_grad` for `epoch`; return every group that trains now."""
        active = self.trainable(epoch)
        active_ids = {id(g) for g in active}
        for p in self.head.params:
            p.requires_grad_(True)
        for group in self.backbone:
            for p in group.params:
                p.requires_grad_(id(group) in active_ids)
        return [self.head, *active]

    def optimizer_groups(self, group: Group) -> list[dict]:
        """`group` as optimizer param groups: weights decay, biases and norm parameters do not."""
        decay = [p for p in group.params if id(p) not in self._no_decay]
        plain = [p for p in group.params if id(p) in self._no_decay]
        out = []
        for params, wd in ((decay, self.config.weight_decay), (plain, 0.0)):
            if params:
                out.append({"name": group.name, "params": params, "lr": group.lr, "base_lr": group.lr,
                            "weight_decay": wd})
        return out

    def set_train_mode(self, epoch: int) -> None:
        """Train mode, except frozen groups (eval: statistics and dropout fixed) and frozen BatchNorm statistics."""
        model = self.grafted.model
        model.train()
        active = {id(g) for g in self.trainable(epoch)}
        for group in self.backbone:
            if id(group) not in active:
                for module in group.modules:
                    module.eval()
        if self.batchnorm_frozen:
            for module in self.grafted.backbone_modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()


def _no_decay_ids(model: nn.Module) -> set[int]:
    """Ids of parameters exempt from weight decay: biases, 1-d parameters and every norm layer's parameters."""
    ids = {id(p) for p in model.parameters() if p.ndim <= 1}
    for module in model.modules():
        if isinstance(module, NORMS):
            ids |= {id(p) for p in module.parameters(recurse=False)}
    return ids
