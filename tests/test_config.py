from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from ckptkit import CheckpointConfig, RestorePolicy, Retention, Schedule


def test_defaults_follow_the_estimator() -> None:
    cfg = CheckpointConfig(directory="runs/x")
    assert cfg.prefix == "ckpt"
    assert cfg.schedule.every_secs == 600
    assert cfg.schedule.every_steps is None
    assert cfg.retention.max_to_keep == 5
    assert cfg.restore.assertion == "existing_objects_matched"


def test_steps_schedule_turns_off_the_seconds_default() -> None:
    assert Schedule(every_steps=100).every_secs is None


def test_both_none_explicitly_means_no_periodic_saves() -> None:
    schedule = Schedule(every_steps=None, every_secs=None)
    assert not schedule.periodic


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"every_steps": 10, "every_secs": 5}, "set only one of every_steps and every_secs"),
        ({"every_steps": 0}, "every_steps"),
        ({"every_steps": -3}, "every_steps"),
        ({"every_secs": -1.0}, "every_secs"),
        ({"every_step": 10}, "every_step"),
    ],
)
def test_bad_schedule_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Schedule(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_to_keep": 0}, "max_to_keep"),
        ({"max_to_keep": -1}, "max_to_keep"),
        ({"keep_every_n_hours": 0}, "keep_every_n_hours"),
        ({"best_k": 3}, "best_k"),
    ],
)
def test_bad_retention_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Retention(**kwargs)


def test_unknown_assertion_lists_the_choices() -> None:
    with pytest.raises(ValidationError, match="existing_objects_matched"):
        RestorePolicy(assertion="strict")  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["", "a/b", "with space", "-x"])
def test_prefix_must_be_a_plain_file_name(prefix: str) -> None:
    with pytest.raises(ValidationError, match="prefix"):
        CheckpointConfig(directory="d", prefix=prefix)


def test_unknown_top_level_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="directroy"):
        CheckpointConfig.model_validate({"directroy": "x"})


@pytest.mark.parametrize("size", [0, 4096, 1.5e6, "2MiB"])
def test_max_shard_bytes_is_a_whole_number_of_at_least_a_mib(size: object) -> None:
    with pytest.raises(ValidationError, match="max_shard_bytes"):
        CheckpointConfig(directory="/tmp/x", max_shard_bytes=size)
    assert CheckpointConfig(directory="/tmp/x", max_shard_bytes=1 << 20).max_shard_bytes == 1 << 20


def test_empty_directory_is_refused() -> None:
    with pytest.raises(ValidationError, match="directory"):
        CheckpointConfig(directory="  ")


def test_configs_are_frozen() -> None:
    cfg = CheckpointConfig(directory="d")
    with pytest.raises(ValidationError, match="frozen"):
        cfg.prefix = "other"  # type: ignore[misc]


def test_loads_from_json_file_and_path_objects(tmp_path: Path) -> None:
    source = tmp_path / "cfg.json"
    source.write_text(
        json.dumps(
            {
                "directory": "runs/exp1",
                "schedule": {"every_steps": 100},
                "retention": {"max_to_keep": 3, "keep_every_n_hours": 2},
                "restore": {"assertion": "consumed"},
            }
        )
    )
    cfg = CheckpointConfig.model_validate_json(source.read_text())
    assert cfg.schedule == Schedule(every_steps=100)
    assert cfg.retention.keep_every_n_hours == 2
    assert CheckpointConfig(directory=tmp_path).directory == str(tmp_path)
    assert CheckpointConfig.model_validate_json(cfg.model_dump_json()) == cfg


def test_json_round_trip_keeps_disabled_schedule() -> None:
    cfg = CheckpointConfig(directory="d", schedule=Schedule(every_steps=None, every_secs=None))
    again = CheckpointConfig.model_validate_json(cfg.model_dump_json())
    assert not again.schedule.periodic


def test_translates_to_tf_checkpoint_manager_kwargs() -> None:
    cfg = CheckpointConfig(
        directory="d", prefix="model", retention=Retention(max_to_keep=2, keep_every_n_hours=1.5)
    )
    assert cfg.tf_manager_kwargs() == {
        "directory": "d",
        "checkpoint_name": "model",
        "max_to_keep": 2,
        "keep_checkpoint_every_n_hours": 1.5,
    }
