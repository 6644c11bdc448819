"""Graft's training engine vs a hand-written PyTorch loop: same model, data, batch size and steps, alternating.

Run: .venv/bin/python bench/train_overhead.py [--rounds 3] [--epochs 1]
Prints images/s of each and ratio = graft / plain (target ≥ 0.95).
"""

import argparse
import statistics
import time

import common  # noqa: F401 - puts the repo on sys.path
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from workers.pipeline import backbones, datasets, engine
from workers.pipeline.images import Preprocessing
from workers.pipeline.strategies import StrategyConfig


def graft_run(data, pre, epochs: int, batch: int) -> float:
    torch.manual_seed(0)
    grafted = backbones.build("resnet18", 10)
    cfg = engine.TrainConfig(epochs=epochs, batch_size=batch, strategy=StrategyConfig("finetune", lr=0.01),
                             device="cpu", grad_clip_norm=None)  # the textbook loop clips nothing either
    empty = data.subset(torch.arange(0))
    start = time.perf_counter()
    engine.Trainer(grafted, pre, cfg).fit(data, empty)
    return epochs * len(data) / (time.perf_counter() - start)


def plain_run(data, pre, epochs: int, batch: int) -> float:
    torch.manual_seed(0)
    model = backbones.build("resnet18", 10).model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(TensorDataset(data.images, data.labels), batch_size=batch, shuffle=True)
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            x = (x.float() / 255 - mean) / std
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return epochs * len(data) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    pre = Preprocessing(image_size=32)
    data = datasets.decode_set(datasets.load_raw("digits"), pre)
    plain_run(data, pre, 1, args.batch)  # warm-up
    graft, plain = [], []
    for _ in range(args.rounds):
        plain.append(plain_run(data, pre, args.epochs, args.batch))
        graft.append(graft_run(data, pre, args.epochs, args.batch))
    g, p = statistics.median(graft), statistics.median(plain)
    common.report({"graft_images_per_s": round(g, 1), "plain_images_per_s": round(p, 1), "ratio": round(g / p, 3),
                   "rounds": args.rounds, "model": "resnet18", "image_size": 32, "batch_size": args.batch,
                   "images": len(data)})


if __name__ == "__main__":
    main()
