"""Top-k prediction for a trained model, with the preprocessing it was trained with."""

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from workers.pipeline import checkpoints
from workers.pipeline import device as devices
from workers.pipeline.images import Preprocessing


@dataclass
class Predictor:
    """A loaded model ready to label images."""

    model: torch.nn.Module
    classes: list[str]
    preprocessing: Preprocessing
    device: torch.device

    @classmethod
    def from_checkpoint(cls, path: Path, *, device: str = "cpu") -> "Predictor":
        """Load a Graft checkpoint file."""
        dev = devices.resolve_device(device)
        grafted, meta = checkpoints.load(path, device=dev)
        return cls(grafted.model, list(meta["classes"]), Preprocessing.from_dict(meta["preprocessing"]), dev)

    @torch.no_grad()
    def predict(self, images: list[Image.Image], *, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """For each RGB image, the `top_k` (label, probability) pairs, most likely first."""
        if not images:
            return []
        k = max(1, min(top_k, len(self.classes)))
        batch = torch.stack([self.preprocessing.to_uint8(img) for img in images])
        x = self.preprocessing.normalize(devices.to_device(batch, self.device))
        probs = torch.softmax(self.model(x).float(), dim=1)
        scores, idx = probs.topk(k, dim=1)
        return [
            [(self.classes[i], float(s)) for i, s in zip(row_idx.tolist(), row_scores.tolist(), strict=True)]
            for row_idx, row_scores in zip(idx, scores, strict=True)
        ]
