"""Fixtures only; helpers that tests import live in helpers.py."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest
from helpers import S3Server

import ckptkit


@pytest.fixture
def config(tmp_path):
    def _config(**kwargs):
        kwargs.setdefault("directory", str(tmp_path / "ckpts"))
        return ckptkit.CheckpointConfig(**kwargs)

    return _config


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One S3 server on loopback for the session; AWS_* variables point every client at it."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "CKPTKIT_CACHE_DIR": str(tmp_path_factory.mktemp("ckptkit-cache")),
    }
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs each request
    server = S3Server()
    env["AWS_ENDPOINT_URL"] = server.endpoint
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    server.start()
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_dir(s3_server):
    """A checkpoint directory URL in a new bucket of the session's S3 server."""
    return f"s3://{s3_server.bucket()}/run"
