"""The examples print no TensorFlow C++ start-up lines; README's Quick start runs as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each example in a process of its own: `nox -s slow`

EXAMPLES = Path(__file__).parent.parent / "examples"
NOISE = ("I0000", "absl::InitializeLog", "cuda drivers", "oneDNN")


@pytest.mark.parametrize(
    "example",
    [
        "custom_training_loop",
        "keras_fit",
        "legacy_saver",
        "multi_worker",
        "finetune_and_export",
        "orbit_loop",
    ],
)
def test_an_example_prints_no_tensorflow_startup_lines(example) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{example}.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "usage:" in done.stdout
    assert not [line for line in done.stderr.splitlines() if any(n in line for n in NOISE)]


def test_every_example_that_imports_tensorflow_quiets_it_first() -> None:
    for path in sorted(EXAMPLES.glob("*.py")):
        text = path.read_text()
        imports_tf = any(m in text for m in ("import tensorflow", "import ckptkit", "import keras"))
        if path.name == "quiet_tf.py" or not imports_tf:
            continue
        assert "import quiet_tf" in text, path.name
        first = min(
            text.index(m)
            for m in ("\nimport tensorflow", "\nimport ckptkit", "\nimport keras")
            if m in text
        )
        assert text.index("import quiet_tf") < first, path.name


def test_the_readme_quick_start_runs_twice_in_a_row_verbatim(tmp_path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    start = readme.index("```python\n", readme.index("## Quick start")) + len("```python\n")
    code = readme[start : readme.index("```", start)]
    said = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        said.append(done.stdout.strip().splitlines()[-1])
    assert said == ["False 300 [100, 200, 300]", "True 300 [100, 200, 300]"]
