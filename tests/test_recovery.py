"""Recovery from divergence: roll back to the newest good checkpoint, or give up with an error."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import ckptkit
import ckptkit.keras

X = tf.constant(np.random.default_rng(0).random((16, 4)), tf.float32)
Y = tf.reduce_sum(X, axis=1, keepdims=True)
POISON = tf.fill((16, 4), float("nan"))


class Loop:
    """A custom training loop that saves every 5 steps; `poisoned` steps see NaN inputs."""

    def __init__(self, config: ckptkit.CheckpointConfig, recovery: ckptkit.Recovery) -> None:
        self.dense = tf.keras.layers.Dense(1)
        self.dense.build((None, 4))
        self.optimizer = tf.keras.optimizers.SGD(0.01)
        self.optimizer.build(self.dense.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64)
        config = config.model_copy(
            update={"schedule": ckptkit.Schedule(every_steps=5), "recovery": recovery}
        )
        self.manager = ckptkit.CheckpointManager(
            config, dense=self.dense, optimizer=self.optimizer, step=self.step
        )

    def train_step(self, x: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((self.dense(x) - Y) ** 2)
        grads = tape.gradient(loss, self.dense.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.dense.trainable_variables, strict=True))
        return loss

    def run(self, until: int, poisoned: set[int]) -> list[int]:
        """Trains to step `until`; returns the steps rolled back to."""
        rolled = []
        self.manager.maybe_save(0)  # something to roll back to from the start
        while int(self.step.numpy()) < until:
            now = int(self.step.numpy()) + 1
            loss = self.train_step(POISON if now in poisoned else X)
            if self.manager.check_loss(loss):
                poisoned.discard(now)  # the bad batch is not seen again
                rolled.append(int(self.step.numpy()))
                continue
            self.step.assign(now)
            self.manager.maybe_save(now)
        return rolled


def test_a_nan_loss_rolls_back_to_the_last_good_checkpoint_and_training_finishes(config) -> None:
    loop = Loop(config(), ckptkit.Recovery(max_trials=2))
    with pytest.warns(UserWarning, match=r"diverged \(nan\); rolled back to .*ckpt-20 \(step 20\)"):
        rolled = loop.run(until=40, poisoned={23})
    assert rolled == [20]
    assert np.isfinite(loop.dense.kernel.numpy()).all()
    assert int(loop.step.numpy()) == 40
    for info in loop.manager.checkpoints:  # nothing diverged was committed
        assert np.isfinite(ckptkit.read_tensor(info.path, loop.dense.kernel.path)).all()
    loop.manager.close()


def test_a_loss_that_stays_bad_ends_in_a_divergence_error_naming_the_steps(config) -> None:
    loop = Loop(config(), ckptkit.Recovery(max_trials=2, loss_upper_bound=1e6))
    with (
        pytest.warns(UserWarning, match="rolled back"),
        pytest.raises(
            ckptkit.DivergenceError, match=r"2 rollback\(s\) in a row \(to step\(s\) 10, 10"
        ),
    ):
        loop.run(until=40, poisoned=set(range(11, 41)) | {1000})  # every step from 11 on
    assert isinstance(ckptkit.DivergenceError("x"), ArithmeticError)
    loop.manager.close()


def test_saves_are_refused_while_the_loss_is_bad_and_for_non_finite_metrics(config) -> None:
    cfg = config().model_copy(update={"recovery": ckptkit.Recovery()})
    manager = ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0))
    manager.save(1)
    with pytest.warns(UserWarning, match=r"not saving step 2: its metrics are not finite"):
        assert manager.save(2, metrics={"loss": float("inf")}) is None
    with pytest.warns(UserWarning, match="rolled back"):
        assert manager.check_loss(float("nan"))
    with pytest.warns(UserWarning, match="not saving step 3: the last loss handed to check_loss"):
        assert manager.save(3) is None
    assert not manager.check_loss(tf.constant(0.5))  # healthy again: saves go ahead
    assert manager.save(4) is not None
    assert [c.step for c in manager.checkpoints] == [1, 4]
    with pytest.raises(TypeError, match=r"recovery=ckptkit\.Recovery"):
        ckptkit.CheckpointManager(config(), w=tf.Variable(1.0)).check_loss(1.0)
    manager.close()


def test_fit_recovers_from_a_nan_batch_and_ends_with_finite_weights(tmp_path) -> None:
    keras = tf.keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    x = np.random.default_rng(1).random((160, 4)).astype("float32")
    x[96:112] = np.nan  # batch 7 of 10 (16 rows a batch), in each epoch
    y = x.sum(axis=1, keepdims=True)
    callback = ckptkit.keras.CheckpointCallback(
        tmp_path / "run",
        schedule=ckptkit.Schedule(every_steps=3),
        keep_checkpoints=True,
        recovery=ckptkit.Recovery(max_trials=3),
    )
    with pytest.warns(UserWarning, match=r"rolled back to .*ckpt-6 \(step 6\)"):
        history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, callbacks=[callback])
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert np.isfinite(history.history["loss"][-1])  # judged on the batches after the rollback
    for info in ckptkit.list_checkpoints(str(tmp_path / "run")):
        kernel = ckptkit.read_tensor(info.path, "optimizer/_trainable_variables/0")
        assert np.isfinite(kernel).all(), info.path
