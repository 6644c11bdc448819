"""The adaptation weight's warm-up, as in DANN: λ rises from 0 to almost 1 over training."""

import math


def ramp(progress: float, gamma: float = 10.0) -> float:
    """λ = 2 / (1 + exp(−γ·p)) − 1 for training progress p, clamped into [0, 1] (0 at p = 0, 0.9999 at p = 1)."""
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0
