"""Atomic writes: a failed step leaves nothing that looks complete; results get normal permissions.
Readers: bad JSON and JSONL inputs are one error naming the file (and the line)."""

import os
import re

import pytest

from tala.errors import InputError
from tala.fileio import atomic_path, read_jsonl, write_json_atomic


def test_result_appears_only_on_success_with_umask_mode(tmp_path):
    target = tmp_path / "sub" / "out.json"
    old = os.umask(0o022)
    try:
        write_json_atomic(target, {"a": 1})
    finally:
        os.umask(old)
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_failure_leaves_no_partial_file_and_keeps_the_old_result(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            assert tmp.name.endswith(".txt.part")
            raise RuntimeError("killed")
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_read_jsonl_numbers_lines_and_names_the_bad_one(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert read_jsonl(path) == [(1, {"a": 1}), (3, {"a": 2})]
    path.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(InputError, match=r"rows\.jsonl: line 2: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"line 2: expected a JSON object"):
        read_jsonl(path)
    with pytest.raises(InputError, match=r"missing\.jsonl: no such file"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_a_json_file_that_is_not_an_object_is_one_error_naming_it(tmp_path):
    from tala.fileio import read_json_object

    path = tmp_path / "speechllm.json"
    for text, reason in (("{", "not valid JSON: Expecting"), ("[1, 2]", "expected a JSON object")):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=re.escape(f"{path}: {reason}")):
            read_json_object(path)
    path.write_text('{"encoder": "e"}', encoding="utf-8")
    assert read_json_object(path) == {"encoder": "e"}
