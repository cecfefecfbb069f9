"""Developer sessions; `nox -s demo` and the default sessions are all a newcomer needs."""

from __future__ import annotations

import os

import nox

# uv installs each distinct set of packages once into its cache and links it into every session's
# environment (TensorFlow: seconds instead of minutes a session); plain venv + pip without uv.
nox.options.default_venv_backend = "uv|venv"
# uv, unlike pip, does not compile the installed modules; where PYTHONDONTWRITEBYTECODE is set,
# every process would then compile TensorFlow's ~1,800 modules at import (3.5 s -> 7.5 s).
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "typecheck", "tests", "slow", "examples", "oldest"]

PYTHON = None  # the interpreter nox itself runs on (>= 3.10)
# The lower bounds of pyproject.toml's dependencies, as `nox -s oldest` installs them.
OLDEST = ("tensorflow==2.16.2", "keras==3.3.3", "pydantic==2.6.4", "rich==13.0.0")
# Modules without TensorFlow whose docstring examples run as tests.
PURE_MODULES = tuple(
    f"ckptkit/{name}.py"
    for name in (
        "config",
        "keymap",
        "matching",
        "progress",
        "retention",
        "run_config",
        "schedule",
        "status",
    )
)
# The in-process tests are independent: one pytest-xdist worker per core. The `slow` tests run
# one at a time: their worker processes and clusters use the cores themselves.
PARALLEL = ("-n", "auto")
# Pinned: a new release's new rules or inferences must not turn CI red on unchanged code.
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Trains a small model, kills it mid-run, resumes it, and lists the checkpoints."""
    session.install("-e", ".")
    session.run("python", "examples/demo.py", *session.posargs)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite but the `slow` tests, and the pure modules' docstring examples."""
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "not slow", *PARALLEL, *session.posargs)
    if not session.posargs:
        session.run("pytest", "--doctest-modules", *PURE_MODULES)


@nox.session(python=PYTHON)
def slow(session: nox.Session) -> None:
    """The `slow` tests: real kills of worker processes, preemption signals, the examples."""
    session.install("-e", ".[test]")
    _install_orbit(session)
    session.run("pytest", "-m", "slow", *session.posargs)


def _install_orbit(session: nox.Session) -> None:
    """Orbit (TF Model Garden's loop library) for `tests/test_orbit.py`, without the rest.

    ``tf-models-official`` brings Orbit; its full dependency set conflicts with ours, and
    `import orbit` needs only TensorFlow, tf-keras (at TensorFlow's minor version) and absl.
    """
    tensorflow = session.run(
        "python", "-c", "import tensorflow as tf; print(tf.__version__)", silent=True
    )
    minor = ".".join(str(tensorflow).strip().splitlines()[-1].split(".")[:2])
    session.install("--no-deps", "tf-models-official", f"tf-keras~={minor}.0")


@nox.session(python=PYTHON)
def oldest(session: nox.Session) -> None:
    """The `tests` session's tests on the oldest versions pyproject.toml allows."""
    session.install("-e", ".[test]", *OLDEST)
    session.run("pytest", "-m", "not slow", *PARALLEL, *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Runs ruff check and ruff format --check."""
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """Runs mypy --strict on the package (TensorFlow itself is untyped and taken as Any)."""
    session.install(
        MYPY,
        "pydantic>=2.6",
        "numpy",
        "rich",
        "types-protobuf",
        "ml-dtypes",
        "google-crc32c",
        "safetensors",
    )
    session.run("mypy", "ckptkit")


@nox.session(python=PYTHON)
def examples(session: nox.Session) -> None:
    """Runs every example, twice where the second run must resume from the first."""
    session.install("-e", ".")
    _install_orbit(session)
    tmp = session.create_tmp()
    loop = ("python", "examples/custom_training_loop.py", "--dir", f"{tmp}/loop")
    session.run(*loop, "--fresh")
    session.run(*loop, "--expect-resume")
    session.run("python", "examples/demo.py", "--dir", f"{tmp}/demo")
    session.run("python", "examples/resume_after_crash.py", "--dir", f"{tmp}/resume")
    session.run("python", "examples/keras_fit.py", "--dir", f"{tmp}/keras_fit")
    session.run("python", "examples/legacy_saver.py", "--dir", f"{tmp}/legacy_saver")
    session.run("python", "examples/estimator_schedule.py", "--dir", f"{tmp}/estimator")
    session.run("python", "examples/multi_worker.py", "--dir", f"{tmp}/multi_worker")
    session.run("python", "examples/finetune_and_export.py", "--dir", f"{tmp}/after")
    session.run("python", "examples/orbit_loop.py", "--dir", f"{tmp}/orbit")


@nox.session(python=PYTHON)
def faults(session: nox.Session) -> None:
    """The fault suite at full size (CI runs a sample of each).

    300 random and 100 timed SIGKILLs, 600 racing restores, 1500 fuzzed files (CI: 30, 10, 60
    and 150).
    """
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "tests/test_faults.py",
        "tests/test_fuzz.py",
        "-s",
        *session.posargs,
        env={"CKPTKIT_FAULT_TRIALS": "300", "CKPTKIT_FUZZ_CASES": "1500"},
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Times ckptkit against plain tf.train.CheckpointManager in one process; prints ratios."""
    session.install("-e", ".[s3]", "moto[s3]>=5.1", "flask", "flask-cors")  # (g): S3 on loopback
    session.run("python", "benchmarks/bench.py", *session.posargs)
