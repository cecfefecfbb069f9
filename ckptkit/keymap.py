r"""Key maps: how the names in a name-based checkpoint become the names of a program's variables.

A key map is one of:

- a mapping ``{"dnn/logits/kernel": "logits/kernel", "global_step": None}``: exact names;
- a list of regex rules, ``[(r"dnn/hiddenlayer_(\d+)/(.*)", r"hidden\1/\2"),
  ("training/.*", None)]``: the first pattern matching the whole name wins; its replacement
  may use groups;
- a callable ``name -> new name | None``.

``None`` as the new name leaves that checkpoint value out on purpose (optimizer slots,
``global_step``); it is reported as left out, not as unused. A name no rule speaks of keeps its
own name. `parse_rules` reads rules from text, for the command line.

No TensorFlow here.

Example:
    >>> rename = compile_key_map([(r"dnn/(.*)", r"\1"), ("global_step", None)])
    >>> rename("dnn/logits/bias"), rename("global_step"), rename("other")
    ('logits/bias', None, 'other')
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TypeAlias

from ckptkit.errors import KeyMapError

__all__ = ["MAX_KEY_CHARS", "KeyMap", "Rename", "compile_key_map", "parse_rules"]

Rename: TypeAlias = Callable[[str], str | None]
"""A compiled key map: a checkpoint name to the program's name, or None to leave it out."""

KeyMap: TypeAlias = Mapping[str, str | None] | Sequence[tuple[str, str | None]] | Rename
"""A mapping of exact names, a list of ``(regex, replacement)`` rules, or a callable."""

MAX_KEY_CHARS = 4096  # the longest checkpoint key regex rules are matched against
_ARROW = "=>"
_DROP = "-"


def compile_key_map(key_map: KeyMap | None) -> Rename:
    """Turns a key map into one function; ``None`` is the identity.

    Raises:
        KeyMapError: A rule is not a ``(pattern, replacement)`` pair or its pattern is not a
            valid regular expression. The function from rules raises it for a name longer
            than `MAX_KEY_CHARS`, rather than run the rules on it.
    """
    if key_map is None:
        return _identity
    if isinstance(key_map, Mapping):
        table = dict(key_map)
        return lambda name: table.get(name, name)
    if callable(key_map):
        return _checked(key_map)
    rules = [_compile_rule(index, rule) for index, rule in enumerate(key_map)]

    def rename(name: str) -> str | None:
        if len(name) > MAX_KEY_CHARS:
            # The checkpoint chooses its keys: one of a megabyte makes "(.*)/(.*)/kernel"
            # backtrack for half an hour.
            raise KeyMapError(
                f"checkpoint key {name[:80]!r}... is {len(name)} characters long, over the "
                f"{MAX_KEY_CHARS} that a key map's rules are run on; no program names a "
                "variable so, so the checkpoint is crafted or damaged"
            )
        for pattern, replacement in rules:
            found = pattern.fullmatch(name)
            if found is not None:
                return None if replacement is None else found.expand(replacement)
        return name

    return rename


def _identity(name: str) -> str | None:
    return name


def _checked(function: Rename) -> Rename:
    def rename(name: str) -> str | None:
        new = function(name)
        if new is not None and not isinstance(new, str):
            raise KeyMapError(
                f"the key map returned {new!r} for {name!r}; return a name (str) or None "
                "to leave the value out"
            )
        return new

    return rename


def _compile_rule(index: int, rule: object) -> tuple[re.Pattern[str], str | None]:
    if not (
        isinstance(rule, (tuple, list))
        and len(rule) == 2
        and isinstance(rule[0], str)
        and (rule[1] is None or isinstance(rule[1], str))
    ):
        raise KeyMapError(
            f"key map rule {index} must be a (pattern, replacement) pair of strings, the "
            f"replacement may be None (received {rule!r})"
        )
    try:
        return re.compile(rule[0]), rule[1]
    except re.error as e:
        raise KeyMapError(f"key map rule {index}: bad pattern {rule[0]!r}: {e}") from e


def _literal(replacement: object) -> str:
    if not isinstance(replacement, str):
        raise KeyMapError(f"a key map's new names must be strings (received {replacement!r})")
    return replacement.replace("\\", "\\\\")


def parse_rules(text: str, *, source: str = "the key map") -> list[tuple[str, str | None]]:
    """Reads a key map written as text.

    Either JSON (an object of exact names, or a list of ``[pattern, replacement]`` pairs; a
    ``null`` replacement leaves the value out) or lines ``PATTERN => REPLACEMENT``, where
    ``-`` as the replacement leaves the value out and lines starting with ``#`` are comments.

    Args:
        text: The rules.
        source: Where the text came from, for error messages (a file name).

    Returns:
        The rules, in order (exact names from a JSON object become anchored rules).

    Raises:
        KeyMapError: The text is neither, naming the line.
    """
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            loaded = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise KeyMapError(f"{source} is not valid JSON: {e}") from e
        if isinstance(loaded, dict):  # exact names, as rules
            return [(re.escape(k), None if v is None else _literal(v)) for k, v in loaded.items()]
        rules = [tuple(rule) if isinstance(rule, list) else rule for rule in loaded]
        compile_key_map(rules)  # validate now, naming the rule
        return rules
    parsed: list[tuple[str, str | None]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, arrow, replacement = (part.strip() for part in line.partition(_ARROW))
        if not arrow or not pattern or not replacement:
            raise KeyMapError(
                f"{source}, line {number}: expected 'PATTERN => REPLACEMENT' (or '=> -' to "
                f"leave a value out), received {line!r}"
            )
        parsed.append((pattern, None if replacement == _DROP else replacement))
    compile_key_map(parsed)
    return parsed
