from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from ckptkit import Schedule
from ckptkit.schedule import SaveTimer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(timer: SaveTimer, steps: list[int]) -> list[int]:
    saved = []
    for step in steps:
        if timer.should_save(step):
            timer.record(step)
            saved.append(step)
    return saved


def test_every_steps_saves_on_multiples() -> None:
    timer = SaveTimer(Schedule(every_steps=10), last_step=None)
    assert run(timer, list(range(0, 35))) == [10, 20, 30]


def test_every_steps_with_strides_saves_once_per_crossing() -> None:
    timer = SaveTimer(Schedule(every_steps=10), last_step=None)
    assert run(timer, list(range(0, 50, 3))) == [12, 21, 30, 42]


def test_resumed_run_keeps_the_rhythm() -> None:
    timer = SaveTimer(Schedule(every_steps=10), last_step=20)
    assert run(timer, list(range(20, 41))) == [30, 40]


def test_same_step_is_never_saved_twice() -> None:
    timer = SaveTimer(Schedule(every_steps=1), last_step=None)
    assert run(timer, [1, 1, 2, 2]) == [1, 2]


def test_save_first_step_only_when_nothing_exists() -> None:
    fresh = SaveTimer(Schedule(every_steps=10, save_first_step=True), last_step=None)
    assert run(fresh, list(range(1, 25))) == [1, 10, 20]
    resumed = SaveTimer(Schedule(every_steps=10, save_first_step=True), last_step=20)
    assert run(resumed, list(range(21, 25))) == []


def test_every_secs_counts_from_the_first_step_and_from_each_save() -> None:
    clock = FakeClock()
    timer = SaveTimer(Schedule(every_secs=60), last_step=None, clock=clock)
    assert not timer.should_save(1)  # starts the clock
    clock.now += 59
    assert not timer.should_save(2)
    clock.now += 1
    assert timer.should_save(3)
    timer.record(3)
    clock.now += 30
    assert not timer.should_save(4)
    clock.now += 30
    assert timer.should_save(5)


def test_disabled_schedule_never_saves() -> None:
    timer = SaveTimer(Schedule(every_steps=None, every_secs=None), last_step=None)
    assert run(timer, list(range(1000))) == []


@given(
    every=st.integers(1, 50),
    strides=st.lists(st.integers(1, 20), min_size=1, max_size=200),
    start=st.integers(0, 500),
)
def test_step_schedule_saves_exactly_when_a_multiple_is_crossed(
    every: int, strides: list[int], start: int
) -> None:
    steps = [start]
    for stride in strides:
        steps.append(steps[-1] + stride)
    timer = SaveTimer(Schedule(every_steps=every), last_step=start)
    saved = run(timer, steps[1:])
    expected = [b for a, b in itertools.pairwise(steps) if b // every > a // every]
    assert saved == expected


@given(every=st.integers(1, 20), last=st.integers(0, 200))
def test_estimator_schedule_saves_first_multiples_and_last(every: int, last: int) -> None:
    # The Estimator's saver hook on a run of global steps 0..last: the start, every `every`
    # steps, and the end unless it was just saved.
    timer = SaveTimer(
        Schedule(every_steps=every, save_first_step=True, save_last_step=True), last_step=None
    )
    saved = run(timer, list(range(last + 1)))
    if timer.should_save_last(last):
        timer.record(last)
        saved.append(last)
    assert saved == sorted({0, last} | set(range(every, last + 1, every)))


def test_save_last_step_is_off_by_default() -> None:
    timer = SaveTimer(Schedule(every_steps=10), last_step=None)
    assert not timer.should_save_last(7)


def test_listed_steps_alone_save_there_only() -> None:
    schedule = Schedule(steps=[7, 5, 5])
    assert schedule.every_secs is None  # no default rhythm on top of the steps asked for
    assert schedule.steps == (5, 7)
    assert run(SaveTimer(schedule, last_step=None), list(range(12))) == [5, 7]


def test_listed_steps_add_to_a_rhythm_and_are_crossed_once() -> None:
    timer = SaveTimer(Schedule(every_steps=4, steps=[5, 6]), last_step=None)
    assert run(timer, list(range(0, 13, 3))) == [6, 9, 12]  # 5 and 6 crossed at 6: one save
    resumed = SaveTimer(Schedule(steps=[5, 20]), last_step=10)
    assert run(resumed, list(range(11, 25))) == [20]  # 5 was passed before the restart


@given(st.lists(st.integers(0, 60), max_size=6), st.integers(1, 5))
def test_a_save_comes_at_the_first_step_at_or_past_each_listed_one(
    listed: list[int], stride: int
) -> None:
    steps = list(range(0, 64, stride))
    saved = run(SaveTimer(Schedule(steps=listed), last_step=None), steps)
    expected = {min(s for s in steps if s >= wanted) for wanted in listed if wanted <= steps[-1]}
    assert saved == sorted(expected)
