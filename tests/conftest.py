"""Fixtures only; helpers that tests import live in helpers.py."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

import ckptkit


@pytest.fixture
def config(tmp_path):
    def _config(**kwargs):
        kwargs.setdefault("directory", str(tmp_path / "ckpts"))
        return ckptkit.CheckpointConfig(**kwargs)

    return _config
