"""Key maps and name-based matching: pure code, no TensorFlow."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ckptkit.errors import KeyMapError
from ckptkit.keymap import compile_key_map, parse_rules
from ckptkit.matching import NamedValue, ValueSpec, match_names

F32 = "float32"


def test_the_three_forms_and_none() -> None:
    as_dict = compile_key_map({"a/b": "x", "drop": None})
    assert [as_dict(k) for k in ("a/b", "drop", "other")] == ["x", None, "other"]
    rules = compile_key_map([(r"dnn/hiddenlayer_(\d+)/(.*)", r"h\1/\2"), ("training/.*", None)])
    assert rules("dnn/hiddenlayer_1/kernel") == "h1/kernel"
    assert rules("training/Adagrad/x") is None
    assert rules("dnn/logits/bias") == "dnn/logits/bias"
    assert compile_key_map(str.upper)("ab") == "AB"
    assert compile_key_map(None)("ab") == "ab"


def test_rules_match_whole_names_and_the_first_wins() -> None:
    rename = compile_key_map([("bias", "B"), (".*bias", "second"), (".*", "third")])
    assert rename("bias") == "B"
    assert rename("x/bias") == "second"
    assert rename("biasx") == "third"


@pytest.mark.parametrize(
    ("key_map", "message"),
    [
        ([("a",)], "rule 0 must be a"),
        ([("(", "x")], "rule 0: bad pattern"),
        ([("a", 3)], "rule 0 must be a"),
    ],
)
def test_bad_rules_are_named(key_map: object, message: str) -> None:
    with pytest.raises(KeyMapError, match=message):
        compile_key_map(key_map)  # type: ignore[arg-type]


def test_a_callable_returning_a_non_string_is_refused() -> None:
    with pytest.raises(KeyMapError, match="returned 3 for 'a'"):
        compile_key_map(lambda name: 3)("a")  # type: ignore[arg-type,return-value]


def test_parse_rules_reads_lines_and_json() -> None:
    text = "# Estimator to Keras\ndnn/hiddenlayer_(\\d+)/(.*) => hidden\\1/\\2\nglobal_step => -\n"
    rename = compile_key_map(parse_rules(text))
    assert rename("dnn/hiddenlayer_0/kernel") == "hidden0/kernel"
    assert rename("global_step") is None
    assert compile_key_map(parse_rules('{"a": "b", "c": null}'))("c") is None
    assert compile_key_map(parse_rules('[["a(.)", "b\\\\1"]]'))("ax") == "bx"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a -> b", "rules.txt, line 1: expected 'PATTERN => REPLACEMENT'"),
        ("ok => x\n => x", "rules.txt, line 2"),
        ("a =>", "rules.txt, line 1"),
        ("{bad json", "rules.txt is not valid JSON"),
        ("(unclosed => x", "bad pattern"),
    ],
)
def test_parse_rules_names_the_bad_line(text: str, message: str) -> None:
    with pytest.raises(KeyMapError, match=message):
        parse_rules(text, source="rules.txt")


PROGRAM = [
    NamedValue("model/_operations/1/_kernel", "sequential/hidden/kernel", ValueSpec((4, 8), F32)),
    NamedValue("model/_operations/1/bias", "sequential/hidden/bias", ValueSpec((8,), F32)),
    NamedValue("model/_operations/2/_kernel", "sequential/logits/kernel", ValueSpec((8, 3), F32)),
    NamedValue("model/_operations/2/bias", "sequential/logits/bias", ValueSpec((3,), F32)),
]


def test_matches_by_path_own_name_and_unique_ending() -> None:
    checkpoint = {
        "dnn/hiddenlayer_0/kernel": ValueSpec((4, 8), F32),
        "dnn/hiddenlayer_0/bias": ValueSpec((8,), F32),
        "dnn/logits/kernel": ValueSpec((8, 3), F32),
        "dnn/logits/bias": ValueSpec((3,), F32),
        "global_step": ValueSpec((), "int64"),
    }
    rename = compile_key_map(
        {
            "dnn/hiddenlayer_0/kernel": "model/_operations/1/_kernel",
            "dnn/hiddenlayer_0/bias": "sequential/hidden/bias",
            "dnn/logits/kernel": "logits/kernel",
            "dnn/logits/bias": "logits/bias",
            "global_step": None,
        }
    )
    result = match_names("ck", checkpoint, PROGRAM, rename, loose=True)
    assert sorted(index for _, index in result.pairs) == [0, 1, 2, 3]
    assert result.report.left_out == ("global_step",)
    assert result.report.failures("consumed") == []
    assert "dnn/logits/bias -> model/_operations/2/bias (sequential/logits/bias)" in (
        result.report.matched
    )
    assert "left out on purpose" in result.report.format()


def test_exact_matching_ignores_own_names_and_endings() -> None:
    checkpoint = {"logits/bias": ValueSpec((3,), F32)}
    result = match_names("ck", checkpoint, PROGRAM, compile_key_map(None), loose=False)
    assert result.pairs == ()
    assert result.report.unused_checkpoint_values == ("logits/bias",)
    assert len(result.report.unrestored_objects) == 4


def test_shape_mismatch_is_named_and_not_loaded() -> None:
    checkpoint = {"logits/bias": ValueSpec((5,), F32)}
    result = match_names("ck", checkpoint, PROGRAM, compile_key_map(None), loose=True)
    assert result.pairs == ()
    (mismatch,) = result.report.mismatches
    assert "logits/bias -> model/_operations/2/bias" in str(mismatch)
    assert "float32[5]" in str(mismatch)


def test_an_ambiguous_name_and_a_double_mapping_are_errors() -> None:
    checkpoint = {"k": ValueSpec((4, 8), F32)}
    with pytest.raises(KeyMapError, match="fits several variables"):
        match_names("ck", checkpoint, PROGRAM, compile_key_map({"k": "kernel"}), loose=True)
    checkpoint = {"a": ValueSpec((3,), F32), "b": ValueSpec((3,), F32)}
    rename = compile_key_map({"a": "logits/bias", "b": "sequential/logits/bias"})
    with pytest.raises(KeyMapError, match="'a' and 'b' both map to"):
        match_names("ck", checkpoint, PROGRAM, rename, loose=True)


def test_an_unknown_target_is_reported_unused() -> None:
    checkpoint = {"x": ValueSpec((3,), F32)}
    result = match_names("ck", checkpoint, PROGRAM, compile_key_map({"x": "nope"}), loose=True)
    assert result.report.unused_checkpoint_values == ("x -> nope (no such variable)",)


@given(st.lists(st.from_regex(r"[a-z]{1,3}(/[a-z]{1,3}){0,2}", fullmatch=True), unique=True))
def test_every_key_is_accounted_for_exactly_once(keys: list[str]) -> None:
    checkpoint = {k: ValueSpec((1,), F32) for k in keys}
    program = [NamedValue(k, "", ValueSpec((1,), F32)) for k in keys[::2]]
    rename = compile_key_map([("[a-c].*", None)])
    report = match_names("ck", checkpoint, program, rename, loose=False).report
    buckets = [*report.matched, *report.unused_checkpoint_values, *report.left_out]
    assert sorted(buckets) == sorted(keys)
