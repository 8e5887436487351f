"""Atomic writes: every step writes to a temporary name beside the output and renames at the end,
so that a killed job never leaves a half-written file that looks complete."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tala.errors import InputError


@contextmanager
def atomic_path(final: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the same folder as ``final``; rename it to ``final`` on success.

    The temporary name ends in ``.part`` (after ``final``'s suffix, or ``suffix``) so that a crash
    leftover is never mistaken for a result: callers whose library picks the format from the
    extension (soundfile, matplotlib) pass the format explicitly. On any exception it is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=(suffix if suffix is not None else final.suffix) + ".part",
        dir=final.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # mkstemp creates the file private (0600); results get the usual umask-based mode.
        os.chmod(tmp, 0o666 & ~current_umask())
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it replaces ``final`` whole (see
    ``replace_dir``), on any exception it is removed: a killed job leaves the old folder or the
    new one, never a mix."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        yield tmp
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def current_umask() -> int:
    """The process's umask (read without changing it): the mode a plain open() or mkdir() would give."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def jsonl_text(records: Iterable[dict]) -> str:
    """JSON Lines: one record a line, UTF-8 as written (not escaped)."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def write_jsonl_atomic(path: str | Path, records: Iterable[dict]) -> None:
    write_text_atomic(path, jsonl_text(records))


def read_json(path: str | Path) -> Any:
    """A JSON file's value; InputError naming the file if it is missing or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not valid JSON: {err}") from None


def read_json_object(path: str | Path) -> dict:
    """A JSON file holding an object; InputError naming the file if it is missing or not that."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object")
    return data


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """The objects of a JSONL file with their line numbers (blank lines skipped); InputError
    naming the file (and the line) if it is missing or a line is not a JSON object."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"not readable: {err}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(path, f"line {number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise InputError(path, f"line {number}: expected a JSON object")
        records.append((number, record))
    return records


def replace_dir(tmp_dir: str | Path, final: str | Path) -> None:
    """Rename a finished folder ``tmp_dir`` to ``final``; an existing ``final`` is moved aside
    first and removed after, so ``final`` is never a half-replaced mix of old and new."""
    tmp_dir, final = Path(tmp_dir), Path(final)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.{os.getpid()}.old")
        os.replace(final, old)
    os.replace(tmp_dir, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def tidy_adapter_config(folder: str | Path, base: str | None = None) -> None:
    """peft's ``adapter_config.json`` as a user can share it: ``target_modules`` sorted (peft writes
    them from a set, in the process's hash order: two runs give the same file), and with ``base``
    the base model named as the recognizer's own config names it (a hub id stays a hub id, where
    peft writes the folder it was loaded from: download_models' copy on this machine)."""
    path = Path(folder) / "adapter_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    if base is not None:
        config["base_model_name_or_path"] = base
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")

