"""Save decisions that compose: listed steps, milestones kept for good, on_commit, the cost."""

from __future__ import annotations

import json
import os
import threading

import pytest
from helpers import fill, state

import ckptkit
import ckptkit.keras
from ckptkit.cli import main


def test_listed_steps_and_milestones_through_a_manager(config) -> None:
    cfg = config().model_copy(
        update={
            "schedule": ckptkit.Schedule(every_steps=5, steps=[7]),
            "retention": ckptkit.Retention(max_to_keep=2, keep_every_steps=10),
        }
    )
    with ckptkit.CheckpointManager(cfg, **state()) as manager:
        saved = [step for step in range(1, 31) if manager.maybe_save(step)]
        assert saved == [5, 7, 10, 15, 20, 25, 30]
        # Kept for good: the multiples of 10; and the newest two as ever.
        assert [c.step for c in manager.checkpoints] == [10, 20, 25, 30]
    listed = [c.step for c in ckptkit.list_checkpoints(cfg.directory)]
    assert listed == [10, 20, 25, 30]


@pytest.mark.parametrize("background", [False, True], ids=["sync", "async"])
def test_on_commit_sees_each_committed_checkpoint_and_its_cost(config, background) -> None:
    seen: list[tuple[ckptkit.CheckpointInfo, str]] = []
    done = threading.Event()

    def on_commit(info: ckptkit.CheckpointInfo) -> None:
        seen.append((info, threading.current_thread().name))
        done.set()

    cfg = config().model_copy(update={"on_commit": on_commit, "async_save": background})
    variables = state()
    with ckptkit.CheckpointManager(cfg, **variables) as manager:
        for step in (1, 2):
            fill(variables, step)
            manager.save(step)
        manager.wait()
        with pytest.raises(ckptkit.CheckpointExistsError):
            manager.save(2)  # refused: not committed, not told
        manager.wait()
        infos = [info for info, _ in seen]
        assert [info.step for info in infos] == [1, 2]
        assert [info.path for info in infos] == [c.path for c in manager.checkpoints]
    for info, thread in seen:
        assert info.cost is not None
        files = [f"{info.path}.index", f"{info.path}.data-00000-of-00001"]
        assert info.cost.bytes_written == sum(os.path.getsize(f) for f in files)
        if background:
            assert thread.startswith("ckptkit save")  # told from the background thread
            assert info.cost.background_secs > 0
        else:
            assert info.cost.background_secs == 0
            assert info.cost.blocked_secs > 0
    # The same figures in the manifest, on CheckpointInfo, and in `ckptkit ls --json`.
    listed = ckptkit.list_checkpoints(cfg.directory)
    from_manager = ckptkit.CheckpointManager(cfg, **state()).checkpoints
    assert [c.cost for c in from_manager] == [info.cost for info, _ in seen]
    assert [c.path for c in listed] == [info.path for info, _ in seen]


def test_a_failing_on_commit_warns_and_the_checkpoint_stays(config) -> None:
    def on_commit(info: ckptkit.CheckpointInfo) -> None:
        raise RuntimeError("the copy failed")

    cfg = config().model_copy(update={"on_commit": on_commit})
    with (
        pytest.warns(UserWarning, match="on_commit raised RuntimeError: the copy failed"),
        ckptkit.CheckpointManager(cfg, **state()) as manager,
    ):
        manager.save(1)
    assert [c.step for c in ckptkit.list_checkpoints(cfg.directory)] == [1]


def test_ls_json_shows_the_cost(config, capsys) -> None:
    cfg = config()
    with ckptkit.CheckpointManager(cfg, **state()) as manager:
        manager.save(1)
    assert main(["ls", cfg.directory, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert set(row["cost"]) == {"bytes_written", "blocked_secs", "background_secs"}
    assert row["cost"]["bytes_written"] > 0


def test_a_finished_fit_keeps_its_milestones(tmp_path) -> None:
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    callback = ckptkit.keras.CheckpointCallback(
        tmp_path / "run",
        schedule=ckptkit.Schedule(every_steps=2),
        retention=ckptkit.Retention(max_to_keep=1, keep_every_steps=4),
    )
    x = np.zeros((40, 2), "float32")
    model.fit(x, x[:, :1], batch_size=4, epochs=1, verbose=0, callbacks=[callback])
    # The backups went, as BackupAndRestore's do; the milestones (steps 4 and 8) stayed.
    assert [c.step for c in ckptkit.list_checkpoints(str(tmp_path / "run"))] == [4, 8]
