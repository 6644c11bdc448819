"""Classification metrics from logits: loss, top-1/top-5, per-class precision/recall/F1, confusion matrix."""

import torch
import torch.nn.functional as F


def classification_report(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """Every evaluation metric Graft reports, as plain JSON-ready numbers.

    precision_c = TP_c / (TP_c + FP_c), recall_c = TP_c / (TP_c + FN_c), F1_c = 2PR / (P + R) (0 where undefined);
    confusion[i][j] counts images of true class i predicted as class j.
    """
    logits, labels = logits.float().cpu(), labels.cpu()
    n, k = len(labels), len(classes)
    pred = logits.argmax(1)
    confusion = torch.bincount(labels * k + pred, minlength=k * k).view(k, k)
    tp = confusion.diag().double()
    precision = torch.where(confusion.sum(0) > 0, tp / confusion.sum(0).clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(confusion.sum(1) > 0, tp / confusion.sum(1).clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12),
                     torch.zeros_like(tp))
    report = {
        "loss": F.cross_entropy(logits, labels).item(),
        "accuracy": (pred == labels).double().mean().item(),
        "count": n,
        "macro_f1": f1.mean().item(),
        "per_class": {
            c: {"precision": precision[i].item(), "recall": recall[i].item(), "f1": f1[i].item(),
                "support": int(confusion[i].sum())}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion.tolist(),
    }
    if k > 5:
        top5 = logits.topk(5, dim=1).indices
        report["top5_accuracy"] = (top5 == labels[:, None]).any(1).double().mean().item()
    return report
