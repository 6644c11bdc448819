"""Backbone weights from every source: torchvision's cache, an uploaded state dict, an earlier Graft model.

Nothing here unpickles arbitrary objects: safetensors, or `torch.load(..., weights_only=True)`.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torchvision.models import get_model

from workers.pipeline.backbones import check_arch, find_head, load_torchvision_weights
from workers.pipeline.errors import WeightsUnavailable
from workers.pipeline.images import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class BackboneWeights:
    """A state dict for an arch (head entries may be present; they are replaced) and its normalization."""

    state_dict: dict[str, torch.Tensor]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    source: str = ""


def read_state_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file or a PyTorch file read with `weights_only=True`."""
    try:
        with safe_open(str(path), framework="pt"):
            pass
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        pass
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise WeightsUnavailable(f"the weights file is neither safetensors nor a plain PyTorch state dict: {exc}")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsUnavailable("the weights file must hold a state dict: a mapping of parameter names to tensors")
    return obj


def split_head(arch: str) -> tuple[dict[str, torch.Size], str]:
    """Shapes of `arch`'s backbone entries (built on the meta device when possible) and its head path."""
    check_arch(arch)
    try:
        with torch.device("meta"):
            model = get_model(arch, weights=None)
    except (NotImplementedError, RuntimeError):
        model = get_model(arch, weights=None)
    head = find_head(model)
    shapes = {k: v.shape for k, v in model.state_dict().items() if not k.startswith(head + ".")}
    return shapes, head


def check_fits(arch: str, state: dict[str, torch.Tensor]) -> None:
    """Raise `WeightsUnavailable` naming missing, unexpected and mis-shaped keys unless `state` fits `arch`."""
    shapes, head = split_head(arch)
    given = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    missing = sorted(set(shapes) - set(given))
    unexpected = sorted(set(given) - set(shapes))
    wrong = sorted(k for k in set(shapes) & set(given) if tuple(given[k].shape) != tuple(shapes[k]))
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise WeightsUnavailable(f"these weights do not fit {arch}: " + "; ".join(parts))


def backbone_state(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """`state` without the head's entries (a new head is grafted on)."""
    _, head = split_head(arch)
    return {k: v for k, v in state.items() if not k.startswith(head + ".")}


def from_torchvision(arch: str, name: str, *, allow_download: bool) -> BackboneWeights:
    """torchvision weights `name` for `arch`, from `$TORCH_HOME/hub/checkpoints` (downloaded only if allowed)."""
    try:
        state, entry = load_torchvision_weights(arch, name, allow_download=allow_download)
    except WeightsUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - a failed download or corrupt cache file
        raise WeightsUnavailable(f"could not load torchvision weights {arch}/{name}: {exc}") from exc
    tf = entry.transforms()
    return BackboneWeights(state, tuple(tf.mean), tuple(tf.std), f"torchvision:{entry.name}")


def from_file(path: Path, arch: str, *, source: str = "upload") -> BackboneWeights:
    """An uploaded state dict for `arch`, checked key by key and shape by shape."""
    state = read_state_file(path)
    check_fits(arch, state)
    return BackboneWeights(state, source=source)


def from_graft_checkpoint(path: Path, arch: str) -> BackboneWeights:
    """The backbone of an earlier Graft model (its head is dropped), with that model's normalization."""
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {}).get("graft", "{}"))
    if meta.get("arch") != arch:
        raise WeightsUnavailable(f"that model is a {meta.get('arch')}, not a {arch}; set backbone.arch to match")
    head = meta.get("head_path", "")
    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith(head + ".")}
    pre = meta.get("preprocessing", {})
    return BackboneWeights(state, tuple(pre.get("mean", IMAGENET_MEAN)), tuple(pre.get("std", IMAGENET_STD)),
                           f"model:{meta.get('job_id', '')}")
