"""Feature extraction with the feature cache vs the naive loop that runs the frozen backbone every epoch.

Run: .venv/bin/python bench/feature_cache.py [--epochs 10] [--image-size 64]
resnet18 with real (random-initialised, frozen) weights on scikit-learn's digits, on the CPU.
Prints both wall times, the speed-up (target ≥ 5×) and both final validation accuracies.
"""

import argparse
import time

import common  # noqa: F401 - puts the repo on sys.path
import torch

from workers.pipeline import backbones, datasets, engine
from workers.pipeline.images import Preprocessing
from workers.pipeline.strategies import StrategyConfig


def run(data, pre, *, cache: bool, epochs: int, state: dict) -> tuple[float, float]:
    train_idx, val_idx = datasets.stratified_split(data.labels, 0.2, 0)
    grafted = backbones.build("resnet18", 10, state_dict=state)
    cfg = engine.TrainConfig(epochs=epochs, batch_size=64, feature_cache=cache, device="cpu",
                             strategy=StrategyConfig("feature_extraction", lr=0.1))
    start = time.perf_counter()
    result = engine.Trainer(grafted, pre, cfg).fit(data.subset(train_idx), data.subset(val_idx))
    return time.perf_counter() - start, result.history[-1]["val_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    pre = Preprocessing(image_size=args.image_size)
    data = datasets.decode_set(datasets.load_raw("digits"), pre)
    torch.manual_seed(0)
    state = backbones.get_model("resnet18").state_dict()  # stands in for pretrained weights: frozen either way
    cached_s, cached_acc = run(data, pre, cache=True, epochs=args.epochs, state=state)
    naive_s, naive_acc = run(data, pre, cache=False, epochs=args.epochs, state=state)
    common.report({"cached_seconds": round(cached_s, 2), "naive_seconds": round(naive_s, 2),
                   "speedup": round(naive_s / cached_s, 2), "cached_val_accuracy": round(cached_acc, 4),
                   "naive_val_accuracy": round(naive_acc, 4), "epochs": args.epochs, "image_size": args.image_size,
                   "model": "resnet18"})


if __name__ == "__main__":
    main()
