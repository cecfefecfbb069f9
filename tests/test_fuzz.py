"""Crafted ``.index``, manifest and data files never abort the process or raise untyped errors.

TensorFlow's index reader aborts the whole process (SIGABRT) on entries it cannot parse, so the
cases run in a worker process (tests/workers/fuzz_files.py): a crash there is a failure here
that names the case. The index cases have valid block checksums, so they reach the parsing that
aborts. `CKPTKIT_FUZZ_CASES` sets the number of cases (150 by default; `nox -s faults` runs
1500).
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from forked import ForkedWorker

pytestmark = pytest.mark.slow  # a worker process over 150 crafted files: `nox -s slow`

CASES = int(os.environ.get("CKPTKIT_FUZZ_CASES", "150"))


def test_crafted_files_give_results_or_typed_errors_and_never_abort(tmp_path) -> None:
    worker = ForkedWorker("fuzz_files.py", str(tmp_path), "0", str(CASES))
    stdout, stderr = worker.communicate(timeout=60 + CASES)
    cases = [line for line in stdout.splitlines() if line.startswith("case ")]
    if worker.returncode < 0:
        crash = signal.Signals(-worker.returncode).name
        raise AssertionError(
            f"{crash} in {cases[-1] if cases else 'setup'}; stderr: {stderr[-2000:]}"
        )
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["untyped"] == [], summary["untyped"][:10]
    assert worker.returncode == 0, stderr[-2000:]
    assert len(cases) == CASES
    outcomes = summary["outcomes"]
    # Both outcomes occur, or the damage is too mild (or too wild) to test anything.
    assert outcomes["typed error"] > 0
    assert outcomes["ok"] > 0
    kinds = {line.split()[2].split("-")[0] for line in cases}
    assert kinds == {"index", "manifest", "data"}
    print(f"{CASES} fuzzed files: {outcomes}")
