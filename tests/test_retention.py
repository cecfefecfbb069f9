from __future__ import annotations

import itertools
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ckptkit.retention import best_k, direction, plan_deletions

HOUR = 3600.0


def names(n: int, spacing: float = 60.0) -> list[tuple[str, float]]:
    return [(f"ckpt-{i}", i * spacing) for i in range(n)]


def test_keeps_the_newest_max_to_keep() -> None:
    plan = plan_deletions(names(7), max_to_keep=3, keep_every_n_hours=None, last_preserved=0.0)
    assert plan.delete == ("ckpt-0", "ckpt-1", "ckpt-2", "ckpt-3")
    assert plan.preserved == ()


def test_none_keeps_everything() -> None:
    plan = plan_deletions(names(50), max_to_keep=None, keep_every_n_hours=None, last_preserved=0.0)
    assert plan.delete == ()


def test_keeps_one_every_n_hours_like_tensorflow() -> None:
    # A checkpoint every 20 minutes for 5 hours, keep 2, preserve one per hour.
    candidates = names(16, spacing=20 * 60.0)
    plan = plan_deletions(candidates, max_to_keep=2, keep_every_n_hours=1.0, last_preserved=-1.0)
    # TensorFlow's rule: preserved when t - 1h >= last preserved (starting at the manager's start).
    assert plan.preserved == ("ckpt-3", "ckpt-6", "ckpt-9", "ckpt-12")
    assert plan.last_preserved == 12 * 20 * 60.0
    assert set(plan.delete) | set(plan.preserved) == {f"ckpt-{i}" for i in range(14)}


@given(
    times=st.lists(st.floats(0, 100 * HOUR), min_size=0, max_size=40).map(sorted),
    max_to_keep=st.integers(1, 10),
    hours=st.none() | st.floats(0.1, 10.0),
)
def test_newest_are_always_kept_and_nothing_is_lost_silently(
    times: list[float], max_to_keep: int, hours: float | None
) -> None:
    candidates = [(f"c{i}", t) for i, t in enumerate(times)]
    plan = plan_deletions(
        candidates, max_to_keep=max_to_keep, keep_every_n_hours=hours, last_preserved=-1.0
    )
    kept = [c for c, _ in candidates if c not in plan.delete]
    newest = [c for c, _ in candidates[-max_to_keep:]]
    assert set(newest) <= set(kept)
    assert not set(plan.delete) & set(plan.preserved)
    assert len(kept) == min(len(candidates), max_to_keep) + len(plan.preserved)
    if hours is None:
        assert plan.preserved == ()
    preserved_times = [t for c, t in candidates if c in plan.preserved]
    assert all(b - a >= hours * HOUR for a, b in itertools.pairwise(preserved_times))  # type: ignore[operator]


def test_best_k_ranks_by_direction_and_older_wins_ties() -> None:
    scored = [("a", 3.0), ("b", 1.0), ("c", None), ("d", 1.0), ("e", 2.0)]
    assert best_k(scored, 3, "min") == ("b", "d", "e")
    assert best_k(scored, 2, "max") == ("a", "e")
    assert best_k(scored, 10, "min") == ("b", "d", "e", "a")  # "c" has no value: unranked


@pytest.mark.parametrize(
    ("monitor", "expected"),
    [
        ("loss", "min"),
        ("val_loss", "min"),
        ("val_mean_squared_error", "min"),
        ("mae", "min"),
        ("accuracy", "max"),
        ("val_sparse_categorical_accuracy", "max"),
        ("val_auc", "max"),
        ("precision", "max"),
        ("val_something", None),
    ],
)
def test_auto_direction_follows_the_name_like_keras(monitor: str, expected: str | None) -> None:
    assert direction(monitor) == expected
    assert direction(monitor, "max") == "max"


def test_a_best_checkpoint_outlives_max_to_keep() -> None:
    plan = plan_deletions(
        names(6), max_to_keep=2, keep_every_n_hours=None, last_preserved=0.0, best=("ckpt-1",)
    )
    assert plan.delete == ("ckpt-0", "ckpt-2", "ckpt-3")


@given(
    values=st.lists(st.none() | st.floats(-10, 10), min_size=0, max_size=30),
    max_to_keep=st.integers(1, 5),
    k=st.integers(1, 5),
    mode=st.sampled_from(["min", "max"]),
)
def test_kept_set_is_exactly_the_newest_and_the_best(
    values: list[float | None], max_to_keep: int, k: int, mode: Literal["min", "max"]
) -> None:
    candidates = names(len(values))
    scored = [(c, v) for (c, _), v in zip(candidates, values, strict=True)]
    best = best_k(scored, k, mode)
    plan = plan_deletions(
        candidates, max_to_keep=max_to_keep, keep_every_n_hours=None, last_preserved=0.0, best=best
    )
    kept = {c for c, _ in candidates} - set(plan.delete)
    assert kept == {c for c, _ in candidates[-max_to_keep:]} | set(best)
    ranked = [v for _, v in scored if v is not None]
    if ranked:
        top = min(ranked) if mode == "min" else max(ranked)
        assert any(dict(scored)[c] == top for c in kept)


def test_milestones_outlive_max_to_keep() -> None:
    candidates = names(7)
    plan = plan_deletions(
        candidates,
        max_to_keep=2,
        keep_every_n_hours=None,
        last_preserved=0.0,
        milestones=["ckpt-0", "ckpt-3"],
    )
    assert plan.delete == ("ckpt-1", "ckpt-2", "ckpt-4")
