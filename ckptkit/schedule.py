"""When to save: a step or time rhythm, with no TensorFlow in sight.

`SaveTimer` is the stateful counterpart of the `Schedule` config. It is cheap enough to be asked
on every training step (two comparisons and, for time schedules, one clock read).

Example:
    >>> from ckptkit.config import Schedule
    >>> timer = SaveTimer(Schedule(every_steps=100), last_step=None)
    >>> [s for s in range(1, 350) if timer.should_save(s) and timer.record(s) is None]
    [100, 200, 300]
    >>> timer = SaveTimer(Schedule(every_steps=100, steps=[150, 151]), last_step=None)
    >>> [s for s in range(0, 350, 2) if timer.should_save(s) and timer.record(s) is None]
    [100, 150, 152, 200, 300]
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable

from ckptkit.config import Schedule

__all__ = ["SaveTimer"]


class SaveTimer:
    """Decides, step by step, whether a `Schedule` calls for a save.

    Args:
        schedule: The rhythm to follow.
        last_step: Step of the newest existing checkpoint, or ``None`` when there is none;
            step schedules count from it, so a resumed run keeps its rhythm.
        clock: Seconds as a float; injectable for tests. Defaults to `time.monotonic`.
    """

    def __init__(
        self,
        schedule: Schedule,
        *,
        last_step: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._every_steps = schedule.every_steps
        self._every_secs = schedule.every_secs
        self._steps = schedule.steps
        self._seen = last_step  # the step of the previous call: `steps` are crossed from it
        self._save_first = schedule.save_first_step and last_step is None
        self._save_last = schedule.save_last_step
        self._clock = clock
        self._last_step = last_step
        self._last_time: float | None = None

    def should_save(self, step: int) -> bool:
        """Whether a save is due at `step`; call `record` after saving.

        The first call of a time schedule starts its clock and returns False.
        """
        if step == self._last_step:
            return False
        if self._save_first:
            return True
        seen, self._seen = self._seen, step
        if self._steps and self._crossed(seen, step):
            return True
        if self._every_steps is not None:
            base = self._last_step if self._last_step is not None and self._last_step < step else 0
            return step // self._every_steps > base // self._every_steps
        if self._every_secs is not None:
            now = self._clock()
            if self._last_time is None:
                # The interval starts at the first step seen, not at import or restore time.
                self._last_time = now
                return False
            return now - self._last_time >= self._every_secs
        return False

    def _crossed(self, seen: int | None, step: int) -> bool:
        """Whether a listed step lies in (seen, step]: reached since the previous call."""
        after = -1 if seen is None or seen >= step else seen
        at = bisect.bisect_right(self._steps, after)
        return at < len(self._steps) and self._steps[at] <= step

    def should_save_last(self, step: int) -> bool:
        """Whether training ending at `step` calls for a save (`Schedule.save_last_step`)."""
        return self._save_last and step != self._last_step

    def record(self, step: int) -> None:
        """Note that a checkpoint was saved at `step` (by the schedule or explicitly)."""
        self._last_step = self._seen = step
        self._last_time = self._clock()
        self._save_first = False
