"""Backbones from torchvision's registry with a new classification head grafted on."""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import get_model, get_model_weights, list_models

from workers.pipeline.errors import UnknownArch, WeightsUnavailable
from workers.pipeline.images import IMAGENET_MEAN, IMAGENET_STD

REGISTRY_HINT = "GET /v1/backbones lists them (torchvision.models.list_models())"


CONV_CLASSIFIERS = frozenset({"squeezenet1_0", "squeezenet1_1"})  # no linear layer to replace with a new head


@lru_cache
def available_archs() -> tuple[str, ...]:
    """Names of torchvision's image-classification models that end in a linear classifier."""
    return tuple(a for a in list_models(module=torchvision.models) if a not in CONV_CLASSIFIERS)


def check_arch(arch: str) -> None:
    """Raise `UnknownArch` naming where to find valid names."""
    if arch in CONV_CLASSIFIERS:
        raise UnknownArch(f"{arch} classifies with a convolution, not a linear layer Graft can replace with a new "
                          f"head; choose another arch ({REGISTRY_HINT})")
    if arch not in available_archs():
        raise UnknownArch(f"unknown backbone arch {arch!r}; {REGISTRY_HINT}")


@dataclass
class Grafted:
    """A torchvision model whose classifier was replaced; `head_path` names the new head's module."""

    model: nn.Module
    head_path: str
    pretrained: bool
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @property
    def head(self) -> nn.Module:
        """The new head."""
        return self.model.get_submodule(self.head_path)

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters of the new head."""
        return list(self.head.parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Every parameter outside the head."""
        head_ids = {id(p) for p in self.head.parameters()}
        return [p for p in self.model.parameters() if id(p) not in head_ids]

    def backbone_modules(self) -> list[nn.Module]:
        """Every module outside the head."""
        head_modules = {id(m) for m in self.head.modules()}
        return [m for m in self.model.modules() if id(m) not in head_modules]


def find_head(model: nn.Module) -> str:
    """Dotted path of the final classification layer (`fc`, `classifier.1`, `heads.head`, `head`, …)."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise UnknownArch(f"{type(model).__name__} has no linear classifier Graft can replace")
    return last


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, module)


def make_head(in_features: int, num_classes: int, *, dropout: float = 0.0, hidden: int | None = None,
              bottleneck: int | None = None, bottleneck_dropout: float = 0.5) -> nn.Module:
    """A new head: optional hidden layer (Linear→ReLU) or bottleneck (Linear→BN→ReLU→Dropout, as DAN and DANN
    use), optional dropout, then Linear to `num_classes`."""
    layers: list[nn.Module] = []
    if hidden:
        layers += [nn.Linear(in_features, hidden), nn.ReLU(inplace=True)]
        in_features = hidden
    if bottleneck:
        layers += [nn.Linear(in_features, bottleneck), nn.BatchNorm1d(bottleneck), nn.ReLU(inplace=True),
                   nn.Dropout(bottleneck_dropout)]
        in_features = bottleneck
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(in_features, num_classes))
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def weights_enum(arch: str, name: str):
    """torchvision's weights entry for `arch` named `name` (`DEFAULT` allowed)."""
    check_arch(arch)
    enum = get_model_weights(arch)
    choices = [w.name for w in enum]
    if name == "DEFAULT":
        return enum.DEFAULT
    if name not in choices:
        raise WeightsUnavailable(f"{arch} has no weights {name!r}; choose one of {choices + ['DEFAULT']}")
    return enum[name]


def cached_weights_path(weights) -> Path:
    """Where torchvision's cache keeps the file for `weights` ($TORCH_HOME/hub/checkpoints/<file>)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def load_torchvision_weights(arch: str, name: str, *, allow_download: bool = False) -> tuple[dict, object]:
    """The state dict of torchvision weights, from the local cache unless downloads are allowed."""
    weights = weights_enum(arch, name)
    path = cached_weights_path(weights)
    if not path.exists() and not allow_download:
        raise WeightsUnavailable(
            f"weights {arch}/{weights.name} are not in the local cache and downloads are off: "
            f"place {path.name} (from {weights.url}) at {path}"
        )
    return weights.get_state_dict(progress=False, weights_only=True), weights


def build(
    arch: str,
    num_classes: int,
    *,
    state_dict: dict | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    dropout: float = 0.0,
    hidden: int | None = None,
    bottleneck: int | None = None,
    bottleneck_dropout: float = 0.5,
) -> Grafted:
    """Build `arch`, load `state_dict` into its backbone if given (head entries ignored), graft a new head."""
    check_arch(arch)
    model = get_model(arch, weights=None)
    head_path = find_head(model)
    if state_dict is not None:
        state = {k: v for k, v in state_dict.items() if not k.startswith(head_path + ".")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(head_path + ".")]
        if missing or unexpected:
            raise WeightsUnavailable(
                f"weights do not fit {arch}: missing {missing[:3]}, unexpected {list(unexpected)[:3]}"
            )
    old = model.get_submodule(head_path)
    _set_submodule(model, head_path, make_head(old.in_features, num_classes, dropout=dropout, hidden=hidden,
                                                         bottleneck=bottleneck, bottleneck_dropout=bottleneck_dropout))
    return Grafted(model, head_path, pretrained=state_dict is not None, mean=tuple(mean), std=tuple(std))


@lru_cache
def _catalog_entries() -> tuple:
    entries = []
    for arch in available_archs():
        found = []
        for w in get_model_weights(arch):
            found.append({"name": w.name, "file": Path(w.url).name, "url": w.url,
                          "num_params": w.meta.get("num_params"),
                          "acc_at_1": next(iter(w.meta.get("_metrics", {}).values()), {}).get("acc@1")})
        params = found[0]["num_params"] if found else None
        entries.append((arch, params, tuple(tuple(sorted(f.items())) for f in found)))
    return tuple(entries)


def catalog() -> list[dict]:
    """Every arch with its parameter count and weights, each marked cached if the file is in the local cache."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    out = []
    for arch, params, found in _catalog_entries():
        weights = [dict(f) | {"cached": (checkpoints / dict(f)["file"]).exists()} for f in found]
        out.append({"name": arch, "num_params": params, "weights": weights})
    return out
