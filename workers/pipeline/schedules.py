"""Learning-rate schedules as pure functions of the step: factor × a group's base lr = its lr at that step.

Being pure functions, they apply equally to parameter groups that join the optimizer late (gradual unfreezing).
"""

import math
from dataclasses import dataclass, field

from workers.pipeline.errors import PipelineError

SCHEDULES = ("constant", "step", "multistep", "cosine", "onecycle")


@dataclass(frozen=True)
class Schedule:
    """A schedule's settings; `factor(step)` is the multiplier of every group's base lr at optimizer step `step`.

    - warm-up (any schedule): factor = (step + 1) / W for the first W = warmup_epochs × steps_per_epoch steps;
    - constant: 1;
    - step: gamma ** ⌊epoch / step_size⌋;
    - multistep: gamma ** #{m ∈ milestones : m ≤ epoch};
    - cosine: m + (1 − m) · ½ · (1 + cos(π · s / S)), s and S counted after warm-up, m = min_factor;
    - onecycle: cosine from 1/div_factor up to 1 over the first pct_start of the steps, then cosine down to
      1/(div_factor · final_div_factor) (as `torch.optim.lr_scheduler.OneCycleLR`, peak = the configured lr).
    """

    name: str = "constant"
    total_steps: int = 1
    steps_per_epoch: int = 1
    warmup_epochs: float = 0.0
    step_size: int = 1
    milestones: tuple[int, ...] = field(default_factory=tuple)
    gamma: float = 0.1
    min_factor: float = 0.0
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise PipelineError(f"unknown schedule {self.name!r}; choose one of {list(SCHEDULES)}")

    @property
    def warmup_steps(self) -> int:
        """Steps of linear warm-up."""
        return min(self.total_steps, int(round(self.warmup_epochs * self.steps_per_epoch)))

    def factor(self, step: int) -> float:
        """Multiplier of the base lr for optimizer step `step` (0-based)."""
        warm = self.warmup_steps
        if step < warm:
            return (step + 1) / warm
        epoch = step // self.steps_per_epoch
        if self.name == "constant":
            return 1.0
        if self.name == "step":
            return self.gamma ** (epoch // self.step_size)
        if self.name == "multistep":
            return self.gamma ** sum(1 for m in self.milestones if m <= epoch)
        span = max(1, self.total_steps - warm)
        s = min(step - warm, span)
        if self.name == "cosine":
            return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * s / span))
        return self._onecycle(s, span)

    def _onecycle(self, s: int, span: int) -> float:
        start, end = 1 / self.div_factor, 1 / (self.div_factor * self.final_div_factor)
        up = max(1, int(self.pct_start * span) - 1)
        if s <= up:
            return _cos(start, 1.0, s / up)
        return _cos(1.0, end, min(1.0, (s - up) / max(1, span - 1 - up)))


def _cos(start: float, end: float, pct: float) -> float:
    """Cosine interpolation from `start` to `end` at fraction `pct`."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
