"""Graft's model checkpoint format: a safetensors file whose metadata describes how to rebuild and feed it."""

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from workers.pipeline.backbones import Grafted, build
from workers.pipeline.errors import PipelineError

FORMAT_VERSION = 1


def save(grafted: Grafted, path: Path, *, meta: dict[str, Any]) -> Path:
    """Write the weights and `meta` (arch, classes, preprocessing, head) to `path` atomically."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in grafted.model.state_dict().items()}
    header = {"graft": json.dumps({**meta, "format_version": FORMAT_VERSION, "head_path": grafted.head_path})}
    tmp = path.with_name(path.name + ".part")
    save_file(state, str(tmp), metadata=header)
    tmp.replace(path)
    return path


def read_meta(path: Path) -> dict[str, Any]:
    """The Graft metadata of a checkpoint file, without loading its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        raw = (fh.metadata() or {}).get("graft")
    if raw is None:
        raise PipelineError(f"{path.name} is not a Graft checkpoint (no 'graft' metadata)")
    meta = json.loads(raw)
    if meta.get("format_version") != FORMAT_VERSION:
        raise PipelineError(f"checkpoint format {meta.get('format_version')} is not supported (want {FORMAT_VERSION})")
    return meta


def load(path: Path, *, device: str | torch.device = "cpu") -> tuple[Grafted, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights (no pickle involved)."""
    meta = read_meta(path)
    head = meta.get("head", {})
    grafted = build(
        meta["arch"],
        len(meta["classes"]),
        dropout=head.get("dropout", 0.0),
        hidden=head.get("hidden"),
        bottleneck=head.get("bottleneck"),
        bottleneck_dropout=head.get("bottleneck_dropout", 0.5),
        mean=tuple(meta["preprocessing"]["mean"]),
        std=tuple(meta["preprocessing"]["std"]),
    )
    grafted.model.load_state_dict(load_file(str(path), device=str(device)))
    grafted.model.to(device).eval()
    return grafted, meta


def save_training_state(state: dict[str, Any], path: Path) -> Path:
    """Write a training-state checkpoint (tensors, numbers, strings, lists and dicts only) atomically."""
    tmp = path.with_name(path.name + ".part")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def load_training_state(path: Path) -> dict[str, Any]:
    """Read a training-state checkpoint without unpickling arbitrary objects (`weights_only=True`)."""
    return torch.load(path, map_location="cpu", weights_only=True)
