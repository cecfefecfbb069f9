"""The wheel built from the source tree holds every module, and each subpackage imports from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a wheel and imports TensorFlow in a process of its own

ROOT = Path(__file__).parent.parent
BUILD = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
# The editable install's finder would find the source tree first: only the wheel's copy counts.
IMPORT = (
    "import importlib, sys;"
    "sys.meta_path[:] = [f for f in sys.meta_path"
    " if not getattr(f, '__module__', '').startswith('__editable__')];"
    "[importlib.import_module(m) for m in sys.argv[1:]];"
    "import ckptkit; print(ckptkit.__file__)"
)


def test_the_wheel_holds_every_module_and_each_subpackage_imports_from_it(tmp_path) -> None:
    source = tmp_path / "source"  # what a clean clone has: no build/ or egg-info of ours
    shutil.copytree(
        ROOT / "ckptkit", source / "ckptkit", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    # setuptools is there already (TensorFlow requires it): the build needs no download.
    subprocess.run(
        [sys.executable, "-c", BUILD, str(dist)], cwd=source, check=True, capture_output=True
    )
    (wheel,) = dist.glob("ckptkit-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
        archive.extractall(site)

    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "ckptkit").rglob("*.py")}
    assert modules - packed == set(), "left out of the wheel"
    assert "ckptkit/py.typed" in packed

    packages = sorted(
        p.parent.relative_to(ROOT).as_posix().replace("/", ".")
        for p in (ROOT / "ckptkit").rglob("__init__.py")
    )
    assert {"ckptkit.storage", "ckptkit.reading", "ckptkit.keras"} <= set(packages)
    done = subprocess.run(
        [sys.executable, "-c", IMPORT, *packages],
        env={**os.environ, "PYTHONPATH": str(site), "TF_CPP_MIN_LOG_LEVEL": "3"},
        cwd=tmp_path,  # not the source tree, which `python -c` would put first on sys.path
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip().startswith(str(site)), "imported another copy than the wheel's"
