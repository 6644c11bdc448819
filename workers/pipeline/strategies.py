"""Transfer strategies: which parameters train, at which learning rate, and BatchNorm behaviour."""

from torch import nn

from workers.pipeline.backbones import Grafted
from workers.pipeline.errors import PipelineError

STRATEGIES = ("feature_extraction", "finetune")
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def param_groups(grafted: Grafted, strategy: str, *, lr: float, backbone_lr_mult: float) -> list[dict]:
    """Optimizer parameter groups for `strategy`; freezes what must not train.

    - `feature_extraction`: backbone frozen, only the head trains at `lr`.
    - `finetune`: head at `lr`, a pretrained backbone at `lr * backbone_lr_mult`
      (a backbone built from scratch is all new layers, so it trains at `lr`).
    """
    if strategy not in STRATEGIES:
        raise PipelineError(f"unknown strategy {strategy!r}; choose one of {list(STRATEGIES)}")
    head = grafted.head_parameters()
    backbone = grafted.backbone_parameters()
    for p in head:
        p.requires_grad_(True)
    if strategy == "feature_extraction":
        for p in backbone:
            p.requires_grad_(False)
        return [{"name": "head", "params": head, "lr": lr}]
    for p in backbone:
        p.requires_grad_(True)
    backbone_lr = lr * backbone_lr_mult if grafted.pretrained else lr
    return [{"name": "head", "params": head, "lr": lr}, {"name": "backbone", "params": backbone, "lr": backbone_lr}]


def set_train_mode(grafted: Grafted) -> None:
    """Train mode, except that norm layers whose parameters are all frozen keep eval mode (statistics fixed)."""
    grafted.model.train()
    for module in grafted.backbone_modules():
        if isinstance(module, _NORMS):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
