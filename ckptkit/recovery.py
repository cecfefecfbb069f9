"""Recovery from divergence: when to roll back, to what, and when to give up; no TensorFlow.

`DivergenceWatch` judges the loss handed to it step by step (`Recovery`): a NaN, an infinity
or a loss above the bound is a divergence, answered by a rollback to the newest checkpoint
committed before it. Saves are refused while the loss is bad (the weights that produced it
would be committed) and for metrics that are not finite. Rollbacks in a row are counted; a
checkpoint committed after a rollback, from healthy training, starts the count over; past
`Recovery.max_trials` the watch gives up with `DivergenceError`.

Example:
    >>> from ckptkit.config import Recovery
    >>> watch = DivergenceWatch(Recovery(max_trials=1))
    >>> watch.judge(0.5, newest="run/ckpt-10") is None
    True
    >>> watch.judge(float("nan"), newest="run/ckpt-10")
    'run/ckpt-10'
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from ckptkit.config import Recovery
from ckptkit.errors import DivergenceError
from ckptkit.storage.layout import parse_step

__all__ = ["DivergenceWatch"]


class DivergenceWatch:
    """Decides, loss by loss, whether to roll back, and to which checkpoint.

    Args:
        policy: The `Recovery` settings.
    """

    def __init__(self, policy: Recovery) -> None:
        self._policy = policy
        self.diverged = False  # the last loss judged was bad
        self._rollbacks: list[str] = []  # since the last checkpoint committed after one
        self._last_loss = 0.0

    def diverges(self, loss: float) -> bool:
        """Whether `loss` is NaN, infinite, or above `Recovery.loss_upper_bound`."""
        bound = self._policy.loss_upper_bound
        return not math.isfinite(loss) or (bound is not None and loss > bound)

    def judge(self, loss: float, *, newest: str | None) -> str | None:
        """The checkpoint to roll back to after `loss`, or None when it is healthy.

        Args:
            loss: This step's loss.
            newest: The newest committed checkpoint now.

        Raises:
            DivergenceError: Nothing to roll back to, or `Recovery.max_trials` rollbacks in a
                row without a new checkpoint in between.
        """
        self._last_loss = loss
        if not self.diverges(loss):
            self.diverged = False
            if newest is not None and self._rollbacks and newest != self._rollbacks[-1]:
                self._rollbacks.clear()  # a checkpoint of healthy training since: start over
            return None
        self.diverged = True
        if newest is None:
            raise DivergenceError(
                f"the loss diverged ({loss}) and there is no checkpoint to roll back to; "
                "save one before the loss can diverge (Schedule(save_first_step=True))"
            )
        if len(self._rollbacks) >= self._policy.max_trials:
            steps = ", ".join(str(parse_step(p)) for p in self._rollbacks)
            raise DivergenceError(
                f"the loss diverged again ({loss}) after {len(self._rollbacks)} rollback(s) "
                f"in a row (to step(s) {steps} of {os.path.dirname(newest)}) with no new "
                "checkpoint in between; lower the learning rate, or look at the data around "
                "those steps, then restart"
            )
        self._rollbacks.append(newest)
        return newest

    @property
    def rollbacks(self) -> int:
        """Rollbacks in a row so far."""
        return len(self._rollbacks)

    @property
    def max_trials(self) -> int:
        """Rollbacks in a row allowed (`Recovery.max_trials`)."""
        return self._policy.max_trials

    def refusal(self, metrics: Mapping[str, float] | None) -> str | None:
        """Why a save now would commit diverged weights, or None when it may go ahead."""
        if self.diverged:
            return f"the last loss handed to check_loss diverged ({self._last_loss})"
        bad = {k: v for k, v in (metrics or {}).items() if not math.isfinite(v)}
        if bad:
            return f"its metrics are not finite ({bad})"
        return None
