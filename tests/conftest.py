from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import pytest
import tensorflow as tf

import ckptkit


def make_model(units: int = 4, *, extra_layer: bool = False, build: bool = True) -> keras.Model:
    """A small Sequential model; deterministic weights from a fixed seed."""
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Dense(units, name="l1"), keras.layers.Dense(2, name="l2")]
    if extra_layer:
        layers.append(keras.layers.Dense(2, name="l3"))
    model = keras.Sequential(layers)
    if build:
        model(tf.ones((1, 3)))
    return model


class Net(tf.Module):
    """The TF guide's kind of module: named sub-modules holding variables."""

    def __init__(self, units: int = 5) -> None:
        super().__init__()
        self.l1 = Dense(3, units)
        self.l2 = Dense(units, 1)


class Dense(tf.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.kernel = tf.Variable(tf.fill((n_in, n_out), 0.5), name="kernel")
        self.bias = tf.Variable(tf.zeros((n_out,)), name="bias")


@pytest.fixture
def config(tmp_path):
    def _config(**kwargs):
        kwargs.setdefault("directory", str(tmp_path / "ckpts"))
        return ckptkit.CheckpointConfig(**kwargs)

    return _config
