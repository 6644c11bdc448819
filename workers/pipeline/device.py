"""Device handling in one place: device choice, mixed precision and host-to-device copies."""

import contextlib
from collections.abc import Iterator

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else the CPU; `cuda:N` and `cpu` are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available on this worker")
    return device


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for mixed precision: bf16 where supported, fp16 otherwise; None on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """Autocast to `amp_dtype(device)` when enabled and on CUDA; a no-op otherwise."""
    dtype = amp_dtype(device)
    if not enabled or dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """A gradient scaler, active only for fp16 autocast (bf16 needs none)."""
    active = enabled and amp_dtype(device) == torch.float16
    return torch.amp.GradScaler(device.type, enabled=active)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to `device`, non-blocking from pinned memory on CUDA."""
    return tensor.to(device, non_blocking=device.type == "cuda")


def prepare_host(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Pin a host tensor when it will be copied to CUDA repeatedly."""
    return tensor.pin_memory() if device.type == "cuda" else tensor


def channels_last(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """NHWC memory layout on CUDA, where convolutions run faster with it; unchanged elsewhere."""
    return batch.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else batch
