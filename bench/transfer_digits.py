"""Two-phase transfer inside Graft's pipeline: pre-train on digits 0–4, then learn 5–9 from 10 labels per class.

Run: .venv/bin/python bench/transfer_digits.py [--seeds 0 1 2] [--epochs 15]
Pre-trains resnet18 at 32 px on scikit-learn's digits 0–4 (light augmentation, label smoothing, cosine), then for
each seed draws 10 labelled images per class of 5–9, trains with each strategy from the pre-trained backbone and
from scratch (same recipe for all), and evaluates the last epoch on every remaining 5–9 image.
"""

import argparse
import statistics

import common  # noqa: F401 - puts the repo on sys.path
import torch

from workers.pipeline import backbones, datasets, engine
from workers.pipeline.images import Preprocessing
from workers.pipeline.strategies import StrategyConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()
    pre = Preprocessing(image_size=32)
    source = datasets.decode_set(datasets.load_raw("digits", [str(i) for i in range(5)]), pre)
    target = datasets.decode_set(datasets.load_raw("digits", [str(i) for i in range(5, 10)]), pre)
    torch.manual_seed(0)
    base = backbones.build("resnet18", 5)
    tr, va = datasets.stratified_split(source.labels, 0.1, 0)
    pretrain = engine.Trainer(base, pre, engine.TrainConfig(
        epochs=10, batch_size=64, augmentation="light", label_smoothing=0.1, schedule={"name": "cosine"},
        strategy=StrategyConfig("finetune", lr=0.05), device="cpu")).fit(source.subset(tr), source.subset(va))
    state = {k: v for k, v in base.model.state_dict().items() if not k.startswith("fc.")}
    table = {}
    for name, strategy, weights in [("scratch", "finetune", None), ("feature_extraction", "feature_extraction", state),
                                    ("finetune", "finetune", state), ("gradual_unfreeze", "gradual_unfreeze", state)]:
        accs = []
        for seed in args.seeds:
            train_idx, rest_idx = datasets.few_shot_split(target.labels, 10, seed)
            torch.manual_seed(seed)
            grafted = backbones.build("resnet18", 5, state_dict=weights)
            cfg = engine.TrainConfig(epochs=args.epochs, batch_size=10, seed=seed, schedule={"name": "cosine"},
                                     device="cpu", strategy=StrategyConfig(strategy, lr=args.lr, unfreeze_every=2))
            result = engine.Trainer(grafted, pre, cfg).fit(target.subset(train_idx), target.subset(rest_idx))
            accs.append(result.history[-1]["val_accuracy"])
        table[name] = {"mean": round(statistics.mean(accs), 4), "std": round(statistics.pstdev(accs), 4),
                       "runs": [round(a, 4) for a in accs]}
        print(name, table[name], flush=True)
    margin = min(table[k]["mean"] for k in ("feature_extraction", "finetune", "gradual_unfreeze")) - \
        table["scratch"]["mean"]
    common.report({"results": table, "pretrain_val_accuracy": pretrain.metrics["val_accuracy"],
                   "min_transfer_minus_scratch": round(margin, 4), "epochs": args.epochs, "lr": args.lr})


if __name__ == "__main__":
    main()
