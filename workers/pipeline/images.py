"""Image preprocessing shared by training data and predict: decode, to RGB, resize, crop, normalize."""

import io
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from workers.pipeline.errors import InvalidImage

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How raw images become model input; stored with every model so predict does exactly what training did."""

    image_size: int
    resize_size: int | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def resize_to(self) -> int:
        """Length the shorter side is resized to before the centre crop."""
        return self.resize_size or self.image_size

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessing":
        """Inverse of `to_dict`."""
        return cls(**{**data, "mean": tuple(data["mean"]), "std": tuple(data["std"])})

    def to_uint8(self, image: Image.Image) -> torch.Tensor:
        """An RGB PIL image → a 3×S×S uint8 tensor: shorter side resized, then centre-cropped."""
        mode = InterpolationMode(self.interpolation)
        image = F.resize(image, self.resize_to, interpolation=mode, antialias=True)
        image = F.center_crop(image, [self.image_size, self.image_size])
        return F.pil_to_tensor(image)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """A uint8 N×3×S×S batch → float, scaled to [0, 1] and normalized by mean and std."""
        mean = torch.tensor(self.mean, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, -1, 1, 1)
        return (batch.float().div_(255.0) - mean) / std


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode (grayscale, palette, RGBA, 16-bit, float, CMYK) → 8-bit RGB, EXIF rotation applied."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8)
        image = Image.fromarray(arr, mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def decode(data: bytes, *, max_pixels: int = 64_000_000) -> Image.Image:
    """Bytes of any Pillow-readable format → RGB image; `InvalidImage` with the reason otherwise."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > max_pixels:
                raise InvalidImage(f"image is {image.width}×{image.height} pixels, more than the {max_pixels} allowed")
            image.load()
            return to_rgb(image)
    except InvalidImage:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidImage("the file is not in an image format Pillow can identify") from exc
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"the image could not be decoded: {exc}") from exc
