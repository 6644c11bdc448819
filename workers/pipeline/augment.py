"""Training-time augmentation presets (torchvision.transforms.v2), applied per image to uint8 batches."""

import torch
from torchvision.transforms import v2

from workers.pipeline.errors import PipelineError

PRESETS = ("none", "light", "standard")


def make_augmentation(preset: str, image_size: int) -> v2.Transform | None:
    """The transform for `preset`: `none`; `light` = random shifts (pad size/8 and crop); `standard` = random
    resized crop (scale 0.6–1), horizontal flip and colour jitter. Flips do not suit digits or text: use `light`."""
    if preset == "none":
        return None
    if preset == "light":
        return v2.RandomCrop(image_size, padding=max(1, image_size // 8), padding_mode="edge")
    if preset == "standard":
        return v2.Compose([
            v2.RandomResizedCrop(image_size, scale=(0.6, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(0.2, 0.2, 0.2),
        ])
    raise PipelineError(f"unknown augmentation {preset!r}; choose one of {list(PRESETS)}")


def apply(transform: v2.Transform | None, batch: torch.Tensor) -> torch.Tensor:
    """Each image of a uint8 N×3×S×S batch through `transform` with its own random draw."""
    if transform is None:
        return batch
    return torch.stack([transform(image) for image in batch])
