"""The ``ckptkit`` command: list, inspect and compare checkpoints from the shell.

    ckptkit ls DIR [--all]         one row per checkpoint, newest last (--all: and those on
                                   disk that the state file does not list)
    ckptkit inspect PATH           format, variables, totals, object tree (also .keras files)
    ckptkit inspect PATH --tensor KEY
    ckptkit diff A B               keys only in A / only in B, shape, dtype and value changes
    ckptkit verify PATH [--full]   is every checkpoint intact? exit 0 yes, 1 no
    ckptkit convert SRC DST [--map RULES]... [--program MODULE:FACTORY]
                                   a name-based checkpoint re-encoded as an object-based one
    ckptkit average DIR [--last N | --steps 3,6,9] -o OUT [--overwrite]
                                   the mean of several checkpoints, as a new checkpoint
    ckptkit export CKPT --to safetensors|npz OUT [--include-optimizer]
                                   the weights for other frameworks, by readable names

`verify --full`, `convert`, `average` and `export` draw a progress bar on stderr once they have
run for 2 s, when stderr is a terminal or ``--progress`` is given (never with ``--json``).
TensorFlow's start-up lines are hidden unless ``-v`` is given before the command. Every
command takes ``--json`` and then prints only JSON on stdout, and ``--timeout SECS`` /
``--retries N`` for remote storage (`Storage.timeout_secs` / `Storage.retries`; a dead or
stalled server answers exit status 3 within about SECS x (N + 1)). Exit status: 0 when all is
well; 1 when `verify` finds damage or `diff` finds differences; 2 for a problem with the input
(one line on stderr), a directory with no checkpoint for `ls` included; 3 when remote storage
could not be asked (unreachable, timed out, credentials refused: nothing is said about what is
there).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import os
import pathlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ckptkit._version import __version__
from ckptkit.errors import CkptkitError, StorageUnavailableError, first_line

if TYPE_CHECKING:
    from rich.console import Console

    from ckptkit.reading.inspection import CheckpointContents, CheckpointDiff
    from ckptkit.reading.verification import VerifyReport
    from ckptkit.storage.layout import CheckpointInfo

__all__ = ["main"]


class _UsageError(CkptkitError, ValueError):
    """A command-line argument that cannot be used."""


EXIT_DAMAGED = 1
EXIT_DIFFERENT = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
_MAX_TREE_DEPTH = 32  # deeper levels of a path are drawn as one label


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ckptkit",
        description="List, inspect and compare TensorFlow checkpoints.",
        epilog="exit status: 0 all well; 1 verify found damage or diff found differences; 2 a "
        "problem with the input (one line on stderr); 3 remote storage could not be asked",
    )
    parser.add_argument("--version", action="version", version=f"ckptkit {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="let TensorFlow print its start-up lines (hidden by default)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ls = sub.add_parser("ls", help="list the checkpoints of a directory, newest last")
    ls.add_argument("directory")
    ls.add_argument(
        "--all",
        action="store_true",
        help="also list whole checkpoints on disk that the state file does not list",
    )
    inspect = sub.add_parser("inspect", help="show what a checkpoint holds")
    inspect.add_argument(
        "path", help="checkpoint prefix, its .index file, a directory, or a .weights.h5/.keras file"
    )
    inspect.add_argument("--tensor", metavar="KEY", help="print the value of one tensor")
    diff = sub.add_parser(
        "diff",
        help="compare two checkpoints (or two Keras files) key by key (exit 1 if they differ)",
    )
    diff.add_argument("a")
    diff.add_argument("b")
    verify = sub.add_parser("verify", help="check that checkpoints are intact (exit 1 if not)")
    verify.add_argument("path", help="checkpoint prefix or directory (all its checkpoints)")
    verify.add_argument("--full", action="store_true", help="also read every tensor")
    convert = sub.add_parser(
        "convert",
        help="re-encode a name-based (Saver/Estimator) checkpoint as an object-based one",
        description="Re-encodes the name-based checkpoint SRC as an object-based checkpoint in "
        "the directory DST, renaming values by the key map. With --program, the values go into "
        "the program's variables (matched by object path, variable name or a unique ending of "
        "either); without it, the renamed keys are the object paths written.",
    )
    convert.add_argument("source", metavar="SRC", help="checkpoint prefix or directory")
    convert.add_argument("destination", metavar="DST", help="directory to write to")
    convert.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="RULES",
        help="a rules file (lines 'PATTERN => REPLACEMENT', '=> -' leaves a value out; or "
        "JSON) or one such rule; repeatable, the first matching rule wins",
    )
    convert.add_argument(
        "--program",
        metavar="MODULE:FACTORY",
        help="a function returning the (built) model or a dict of named objects to convert for",
    )
    convert.add_argument(
        "--name", default="model", help="the name the program's object is saved under"
    )
    convert.add_argument(
        "--assertion",
        default="consumed",
        choices=["consumed", "existing_objects_matched", "nontrivial_match", "partial"],
        help="how strictly checkpoint and program must match (default: consumed)",
    )
    average = sub.add_parser(
        "average",
        help="write the mean of several checkpoints' float values as a new checkpoint",
        description="Writes a new checkpoint at OUT whose floating-point values are the mean of "
        "the chosen checkpoints' (accumulated in float64), every other value the newest "
        "chosen one's. SOURCE is a directory (its committed checkpoints: all, --last N or "
        "--steps) or several checkpoint paths.",
    )
    average.add_argument("source", nargs="+", metavar="SOURCE")
    chosen = average.add_mutually_exclusive_group()
    chosen.add_argument("--last", type=int, metavar="N", help="the newest N checkpoints")
    chosen.add_argument("--steps", metavar="S,S,...", help="the checkpoints of these steps (3,6,9)")
    average.add_argument("-o", "--output", required=True, metavar="OUT", help="prefix to write")
    average.add_argument(
        "--overwrite", action="store_true", help="replace a checkpoint already at OUT"
    )
    export = sub.add_parser(
        "export",
        help="write a checkpoint's weights to a safetensors or npz file, by readable names",
        description="Writes the variables of checkpoint CKPT to OUT under their paths through "
        "the object graph (model/.../kernel), optimizer state and the save counter left out "
        "unless --include-optimizer; OUT.names.json maps each name to its checkpoint key. "
        "Runs without TensorFlow.",
    )
    export.add_argument("checkpoint", metavar="CKPT", help="checkpoint prefix or directory")
    export.add_argument("--to", choices=["safetensors", "npz"], default="safetensors")
    export.add_argument("output", metavar="OUT")
    export.add_argument("--include-optimizer", action="store_true")
    for command in (verify, convert, average, export):
        command.add_argument(
            "--progress",
            action="store_true",
            help="draw a progress bar on stderr past 2 s even when it is not a terminal "
            "(on a terminal it is drawn anyway; never with --json)",
        )
    for command in (ls, inspect, diff, verify, convert, average, export):
        command.add_argument("--json", action="store_true", help="print JSON only")
        command.add_argument(
            "--timeout",
            type=float,
            metavar="SECS",
            help="remote storage: how long one attempt of a call may wait (default: 20)",
        )
        command.add_argument(
            "--retries",
            type=int,
            metavar="N",
            help="remote storage: how many times a failed call is tried again (default: 4)",
        )
    return parser


@contextlib.contextmanager
def _bounded(args: argparse.Namespace) -> Iterator[None]:
    """Applies ``--timeout`` / ``--retries`` to the remote paths the command reads."""
    fields = {"timeout_secs": args.timeout, "retries": args.retries}
    given = {name: value for name, value in fields.items() if value is not None}
    with contextlib.ExitStack() as stack:
        if given:
            import pydantic

            from ckptkit.config import Storage
            from ckptkit.storage import routes

            try:
                storage = Storage(**given)
            except pydantic.ValidationError as e:
                problem = e.errors()[0]
                option = "--timeout" if problem["loc"][0] == "timeout_secs" else "--retries"
                raise _UsageError(f"{option}: {problem['msg']}") from None
            for path in _paths(args):
                scheme, sep, rest = path.partition("://")
                if sep:  # every path of that bucket or host
                    stack.enter_context(routes.using(f"{scheme}://{rest.split('/')[0]}", storage))
        yield


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Hides what TensorFlow's C++ runtime prints to fd 2 while it loads (CUDA probing)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except BrokenPipeError:
        # The reader stopped reading (`ckptkit ls --json | head -1`): end quietly, as `cat`
        # does, with stdout pointed at nothing so that the interpreter's last flush is too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except CkptkitError as e:
        # A failed conversion's report names every value; elsewhere the first line says it.
        text = str(e) if args.command == "convert" else first_line(e)
        print(f"ckptkit {args.command}: {text}", file=sys.stderr)
        return EXIT_UNAVAILABLE if isinstance(e, StorageUnavailableError) else EXIT_USAGE
    except MemoryError:
        # Not "they differ" (1): the input asked for more memory than this process may have.
        print(
            f"ckptkit {args.command}: ran out of memory reading {', '.join(_paths(args))}; "
            "the file claims more than it holds, or is larger than this machine's memory",
            file=sys.stderr,
        )
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    """Runs the parsed command; returns its exit status."""
    from ckptkit.storage import layout  # no TensorFlow: `ls` and missing paths answer at once

    with _bounded(args):
        if args.command == "ls":
            infos = layout.list_checkpoints(args.directory)
            hidden = [
                layout.describe(p)
                for p in layout.unlisted(args.directory, (i.path for i in infos))
                if args.all
            ]
            if not infos and not hidden:
                raise layout.no_checkpoint(args.directory)
            _ls(infos, hidden, as_json=args.json)
            return 0
        for given in _paths(args):
            if not _present(given):
                layout.resolve_checkpoint(given)  # raises the error that names the path
        if not args.verbose:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with contextlib.nullcontext() if args.verbose else _quiet_stderr():
            from ckptkit.reading import inspection, verification
        with _progress_shown(args):
            if args.command == "verify":
                report = verification.verify(args.path, full=args.full)
                _verify(report, as_json=args.json)
                return 0 if report.ok else EXIT_DAMAGED
            if args.command == "convert":
                _convert(args)
            elif args.command == "average":
                _average(args)
            elif args.command == "export":
                _export(args)
            elif args.command == "inspect" and args.tensor is not None:
                _tensor(args.path, args.tensor, as_json=args.json)
            elif args.command == "inspect":
                contents = inspection.inspect(args.path)
                graph = None if contents.format == "keras" else inspection.load_graph(args.path)
                _inspect(contents, graph, as_json=args.json)
            else:
                result = inspection.diff(args.a, args.b)
                _diff(result, as_json=args.json)
                if result.only_in_a or result.only_in_b or result.changed:
                    return EXIT_DIFFERENT
    return 0


def _progress_shown(args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """Progress bars on stderr for a long command, on a terminal or when asked; not in JSON."""
    from ckptkit import progress

    asked = getattr(args, "progress", False) or sys.stderr.isatty()
    return progress.shown(asked and not args.json)


def _paths(args: argparse.Namespace) -> list[str]:
    """The checkpoint paths a command reads."""
    if args.command == "diff":
        return [args.a, args.b]
    if args.command == "ls":
        return [args.directory]
    if args.command == "average":
        return list(args.source)
    if args.command == "export":
        return [args.checkpoint]
    return [args.source if args.command == "convert" else args.path]


def _present(path: str) -> bool:
    """Whether something is at `path`, or at its ``.index`` (a checkpoint prefix)."""
    from ckptkit.storage import fs

    return fs.exists(path, follow_links=True) or fs.exists(f"{path}.index", follow_links=True)


def _piped() -> bool:
    """Whether stdout goes to a pipe or file (no terminal, and no COLUMNS set)."""
    return not sys.stdout.isatty() and "COLUMNS" not in os.environ


def _console() -> Console:
    from rich.console import Console

    # No markup: paths and keys such as "runs/exp[lr=0.1]" are printed as they are. Piped
    # output is as wide as its content, so no key is folded.
    return Console(highlight=False, markup=False, width=1 << 14 if _piped() else None)


_PLAIN_ROWS = 500  # past this many rows, rich's measuring and drawing take seconds


def _print_table(headers: list[str], rows: list[list[str]], title: str | None = None) -> None:
    """Prints `rows` under `headers`: a table on a terminal, plain columns into a pipe.

    Piped (as ``gh`` and ``kubectl`` do), or past `_PLAIN_ROWS` rows, the rows are plain
    aligned columns, one row a line, every character kept (and rich is not imported: 10,000
    variables take about 1 s instead of 8). On a terminal, rich draws a table; where it would
    not fit the width (it would fold keys mid-word and cut values), each row is one line, its
    fields separated by two spaces.
    """
    if len(rows) > _PLAIN_ROWS or _piped():
        widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
        if title:
            print(title)
        for line in [headers, *rows]:
            print("  ".join(f.ljust(w) for f, w in zip(line, widths, strict=True)).rstrip())
        return
    from rich.table import Table

    console = _console()
    table = Table(*headers, title=title)
    for row in rows:
        table.add_row(*row)
    natural = console.measure(table, options=console.options.update_width(1 << 14)).maximum
    if natural <= console.width:
        console.print(table)
        return
    if title:
        console.print(title)
    for row in rows:
        console.print("  ".join(field for field in row if field), soft_wrap=True)


def _print_json(value: Any) -> None:
    """Prints `value` as JSON: objects indented, each item of a list of objects on one line.

    One variable (checkpoint, problem) a line reads and greps well, and is quick to write: the
    lines come from json's C encoder, where ``indent=`` takes its pure-Python one (10,000
    variables: 0.25 s).
    """
    print(_json_lines(value, ""))


def _json_lines(value: Any, pad: str) -> str:
    inner = pad + "  "
    if isinstance(value, dict) and value:
        fields = [f"{inner}{json.dumps(k)}: {_json_lines(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(fields) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        return "[\n" + ",\n".join(inner + json.dumps(item) for item in value) + f"\n{pad}]"
    return json.dumps(value)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _ls(infos: list[CheckpointInfo], hidden: list[CheckpointInfo], *, as_json: bool) -> None:
    """Prints the listed checkpoints, then those on disk the state file leaves out (`hidden`)."""
    listed = len(infos)
    infos = infos + hidden
    if as_json:
        _print_json(
            [
                {
                    "path": i.path,
                    "step": i.step,
                    "size_bytes": i.size_bytes,
                    "time": i.time,
                    "metrics": None if i.metrics is None else dict(i.metrics),
                    "metadata": None if i.metadata is None else dict(i.metadata),
                    "cost": i.cost.model_dump() if i.cost else None,
                    "listed": n < listed,
                }
                for n, i in enumerate(infos)
            ]
        )
        return
    rows = []
    for n, info in enumerate(infos):
        when = datetime.datetime.fromtimestamp(info.time).isoformat(sep=" ", timespec="seconds")
        step = "-" if info.step is None else str(info.step)
        metrics = " ".join(f"{k}={v:.4g}" for k, v in (info.metrics or {}).items())
        path = info.path if n < listed else f"{info.path} (not in the state file)"
        rows.append([step, _human_bytes(info.size_bytes), when, metrics, path])
    _print_table(["step", "size", "time", "metrics", "path"], rows)
    print(f"{listed} checkpoint(s)" + (f", {len(hidden)} not in the state file" if hidden else ""))


def _verify(report: VerifyReport, *, as_json: bool) -> None:
    if as_json:
        _print_json(
            {
                "ok": report.ok,
                "checkpoints": [
                    {
                        "path": c.path,
                        "ok": c.ok,
                        "has_manifest": c.has_manifest,
                        "problems": [{"file": p.file, "reason": p.reason} for p in c.problems],
                    }
                    for c in report.checkpoints
                ],
            }
        )
        return
    for verdict in report.checkpoints:
        print(f"{'ok     ' if verdict.ok else 'DAMAGED'} {verdict.path}")
        for problem in verdict.problems:
            print(f"          {problem}")
    bad = sum(not c.ok for c in report.checkpoints)
    print(f"{len(report.checkpoints)} checkpoint(s), {bad} damaged")


def _inspect(contents: CheckpointContents, graph: Any, *, as_json: bool) -> None:
    from ckptkit.reading.inspection import object_paths

    # The object paths of each stored value: where it is stored, then the other routes to it.
    routes: dict[str, tuple[list[str], str]] = {}
    if graph is not None:
        paths = object_paths(graph)
        for node_id, node in enumerate(graph.nodes):
            if node.value is not None and node.path:
                found = paths.get(node_id, [])
                routes[node.path] = (
                    [node.path, *(p for p in found if p != node.path)],
                    node.full_name,
                )
    if as_json:
        _print_json(
            {
                "format": contents.format,
                "path": contents.path,
                "variables": [
                    {
                        "key": v.key,
                        "shape": list(v.shape),
                        "dtype": v.dtype,
                        "size_bytes": v.size_bytes,
                        **_routes_of(v.key, routes),
                    }
                    for v in contents.variables
                ],
                "total_bytes": contents.total_bytes,
            }
        )
        return
    print(f"{contents.path}  format: {contents.format}")
    rows = [
        [str(list(v.shape)), v.dtype, _human_bytes(v.size_bytes), v.key] for v in contents.variables
    ]
    _print_table(["shape", "dtype", "bytes", "key"], rows)
    print(f"{len(contents.variables)} variable(s), {_human_bytes(contents.total_bytes)} in total")
    if routes:
        from rich.tree import Tree

        tree = Tree("object tree (-> where a value reached another way is stored)")
        branches: dict[str, Tree] = {"": tree}
        entries = [(p, stored) for stored, (ps, _) in routes.items() for p in ps]
        for path, stored in sorted(entries):
            parent = ""
            parts = path.split("/")
            if len(parts) > _MAX_TREE_DEPTH:  # a crafted key thousands of levels deep
                parts[_MAX_TREE_DEPTH - 1 :] = ["/".join(parts[_MAX_TREE_DEPTH - 1 :])]
            for i, part in enumerate(parts):
                here = f"{parent}/{part}" if parent else part
                if here not in branches:
                    last = i == len(parts) - 1
                    label = f"{part} -> {stored}" if last and path != stored else part
                    branches[here] = branches[parent].add(label)
                parent = here
        _console().print(tree)


def _routes_of(key: str, routes: dict[str, tuple[list[str], str]]) -> dict[str, Any]:
    """``object_paths`` and ``name`` of the value stored under `key`, for --json."""
    found = routes.get(key.partition("/.ATTRIBUTES/")[0])
    if found is None:
        return {"object_paths": [], "name": None}
    return {"object_paths": found[0], "name": found[1] or None}


def _tensor(path: str, key: str, *, as_json: bool) -> None:
    import numpy as np

    from ckptkit.reading.inspection import read_tensor

    value = read_tensor(path, key)
    if as_json:
        plain = value
        if value.dtype.kind in "SOU":  # bytes as text; bytes that are not UTF-8 escaped
            text = np.frompyfunc(_text_of, 1, 1)(value)
            plain = np.asarray(text, dtype=object)
        _print_json(
            {
                "key": key,
                "shape": list(value.shape),
                "dtype": str(value.dtype),
                "value": plain.tolist(),
            }
        )
        return
    print(f"{key}: {value.dtype}{list(value.shape)}")
    print(np.array2string(value, threshold=1000))


def _text_of(item: object) -> str:
    if isinstance(item, bytes):
        return item.decode("utf-8", "backslashreplace")
    return str(item)


def _diff(result: CheckpointDiff, *, as_json: bool) -> None:
    changed = [
        {
            "key": c.key,
            "a": {"shape": list(c.a[0]), "dtype": c.a[1]},
            "b": {"shape": list(c.b[0]), "dtype": c.b[1]},
            "max_abs_diff": c.max_abs_diff,
        }
        for c in result.changed
    ]
    if as_json:
        _print_json(
            {
                "a": result.a,
                "b": result.b,
                "only_in_a": list(result.only_in_a),
                "only_in_b": list(result.only_in_b),
                "changed": changed,
            }
        )
        return
    print(f"A: {result.a}\nB: {result.b}")
    for title, keys in (("only in A", result.only_in_a), ("only in B", result.only_in_b)):
        print(f"{len(keys)} key(s) {title}")
        for key in keys:
            print(f"  {key}")
    rows = []
    for c in result.changed:
        worst = "-" if c.max_abs_diff is None else f"{c.max_abs_diff:.6g}"
        rows.append([f"{c.a[1]}{list(c.a[0])}", f"{c.b[1]}{list(c.b[0])}", worst, c.key])
    if changed:
        _print_table(["A", "B", "max |A-B|", "key"], rows, title=f"{len(changed)} key(s) changed")


def _convert(args: argparse.Namespace) -> None:
    from ckptkit.keymap import parse_rules
    from ckptkit.migration import convert

    rules: list[tuple[str, str | None]] = []
    for given in args.map:
        is_file = os.path.isfile(given)
        text = pathlib.Path(given).read_text() if is_file else given
        rules.extend(parse_rules(text, source=given if is_file else f"--map {given!r}"))
    trackables = _program(args.program, args.name) if args.program else {}
    result = convert(
        args.source, args.destination, key_map=rules, assertion=args.assertion, **trackables
    )
    report = result.report
    assert report is not None
    if args.json:
        _print_json(
            {
                "path": result.path,
                "step": result.step,
                "matched": list(report.matched),
                "left_out": list(report.left_out),
                "unused_checkpoint_values": list(report.unused_checkpoint_values),
                "deferred_checkpoint_values": list(report.deferred_checkpoint_values),
                "unrestored_objects": list(report.unrestored_objects),
            }
        )
        return
    print(report.format(verbose=True))
    print(f"wrote {result.path}")


def _average(args: argparse.Namespace) -> None:
    from ckptkit.averaging import average

    steps = None
    if args.steps is not None:
        try:
            steps = [int(step) for step in args.steps.split(",")]
        except ValueError:
            raise _UsageError(
                f"--steps takes steps separated by commas, e.g. 3,6,9 (received {args.steps!r})"
            ) from None
    if len(args.source) > 1 and (steps is not None or args.last is not None):
        raise _UsageError("--last and --steps choose among one directory's checkpoints")
    source = args.source[0] if len(args.source) == 1 else args.source
    try:
        result = average(
            source, output=args.output, last=args.last, steps=steps, overwrite=args.overwrite
        )
    except ValueError as e:
        if isinstance(e, CkptkitError):
            raise
        raise _UsageError(str(e)) from e
    if args.json:
        _print_json(
            {
                "path": result.path,
                "sources": list(result.sources),
                "averaged": list(result.averaged),
                "copied": list(result.copied),
            }
        )
        return
    names = ", ".join(os.path.basename(p) for p in result.sources)
    print(
        f"wrote {result.path}: the mean of {names} ({len(result.averaged)} float values "
        f"averaged, {len(result.copied)} others from {os.path.basename(result.sources[-1])})"
    )


def _export(args: argparse.Namespace) -> None:
    from ckptkit.reading.weights_export import export_weights

    names = export_weights(
        args.checkpoint, args.output, format=args.to, include_optimizer=args.include_optimizer
    )
    if args.json:
        _print_json({"output": args.output, "names": names})
        return
    for name, key in names.items():
        print(f"{name}  <-  {key}")
    print(f"wrote {len(names)} variable(s) to {args.output} (names in {args.output}.names.json)")


def _program(spec: str, name: str) -> dict[str, Any]:
    """Calls ``module:function`` (the current directory importable) for the objects."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise _UsageError(
            f"--program must be MODULE:FUNCTION, e.g. mymodels:build (received {spec!r})"
        )
    sys.path.insert(0, os.getcwd())
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as e:
        raise _UsageError(f"--program {spec}: {e}") from e
    made = function()
    return dict(made) if isinstance(made, Mapping) else {name: made}
