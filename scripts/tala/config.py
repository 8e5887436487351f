"""The workflow's configuration: validation against the JSON schema, defaults, per-language
overrides, and discovery of the recordings. Used by workflow/rules/common.smk before any job runs;
pure functions, so the tests call them directly.

``python -m tala.config CONFIG.yaml [...]`` checks config files the way the workflow will and lists
the recordings it would process.
"""

from __future__ import annotations

import argparse
import copy
import csv
import difflib
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
RECORDINGS_SCHEMA_PATH = SCHEMA_PATH.with_name("recordings.schema.yaml")

# A recording id becomes part of every output path and of Snakemake's wildcard matching. Braces
# would be read as wildcards, a slash as a folder, control characters break logs and shells.
# Everything else (spaces, quotes, `$(...)`, non-ASCII letters) is fine because the rules quote
# every path they hand to a shell.
_UNSAFE_ID_CHARS = re.compile(r"[{}/\\\x00-\x1f\x7f]")


class ConfigError(Exception):
    """A configuration problem, reported as one line before any job runs."""


@dataclass(frozen=True)
class Recording:
    lang: str
    id: str
    audio: Path
    text: Path | None  # None: the language has no texts (audio only)


def load_yaml(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return _resolve(node, root)


def fill_defaults(instance: dict[str, Any], schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> None:
    """Fill ``default`` values along ``properties`` only, never into ``additionalProperties``.

    Language sections are ``additionalProperties`` of ``languages``: they must stay sparse, so a
    language overrides only what it names and inherits the rest from the (filled) top level.
    """
    root = schema if root is None else root
    schema = _resolve(schema, root)
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, root)
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict) and sub.get("type") == "object":
            fill_defaults(instance[key], sub, root)
        elif key not in instance and sub.get("type") == "object" and "properties" in sub:
            instance[key] = {}
            fill_defaults(instance[key], sub, root)


def _where(path: Iterable[Any]) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _where(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(_resolve(error.schema, {}).get("properties", {})) if "properties" in error.schema else []
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        if extra:
            hint = difflib.get_close_matches(extra[0], allowed, n=1)
            known = ", ".join(allowed)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else f" (known keys: {known})"
            return f"config error at {where}: unknown key '{extra[0]}'{suggestion}"
    if error.validator == "required":
        return f"config error at {where}: {error.message}"
    if error.validator == "pattern" and isinstance(error.instance, str):
        return f"config error at {where}: '{error.instance}' does not match the pattern {error.validator_value}"
    if error.validator == "propertyNames":
        return f"config error at {where}: name {error.message}"
    return f"config error at {where}: {error.message}"


def validate_config(config: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return a validated copy of ``config`` with defaults filled; raise ConfigError (one line)."""
    schema = load_yaml(SCHEMA_PATH) if schema is None else schema
    if not isinstance(config, Mapping):
        raise ConfigError("config error: the configuration must be a mapping (did the config file load?)")
    if not config.get("languages"):
        raise ConfigError("config error at languages: no languages: describe yours in a config file of your own "
                          "(audio_dir, text_dir, mms_lang; see README.md) and pass it with --configfile")
    filled = copy.deepcopy(dict(config))
    fill_defaults(filled, schema)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: (list(e.absolute_path), e.validator))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(_describe(best) + more)
    unknown = [lang for lang in filled["run_languages"] if lang not in filled["languages"]]
    if unknown:
        raise ConfigError(
            f"config error at run_languages: '{unknown[0]}' is not under languages "
            f"(known: {', '.join(sorted(filled['languages']))})"
        )
    return filled


def selected_languages(config: Mapping[str, Any]) -> list[str]:
    return list(config["run_languages"]) or list(config["languages"])


def check_folders(config: Mapping[str, Any], base_dir: str | Path = ".") -> None:
    """Every selected language's audio and text folders (and sheet) must exist."""
    base = Path(base_dir)
    for lang in selected_languages(config):
        lang_cfg = config["languages"][lang]
        for key in ("audio_dir", "text_dir"):
            if key == "text_dir" and not lang_cfg.get(key):
                continue  # an audio-only language
            folder = base / lang_cfg[key]
            if not folder.is_dir():
                what = "is not a folder" if folder.exists() else "does not exist"
                raise ConfigError(f"config error at languages.{lang}.{key}: folder '{lang_cfg[key]}' {what}")
        truth = lang_cfg.get("truth_dir")
        if truth and not (base / truth).is_dir():
            raise ConfigError(f"config error at languages.{lang}.truth_dir: folder '{truth}' does not exist")
        sheet = lang_cfg.get("recordings")
        if sheet and not (base / sheet).is_file():
            raise ConfigError(f"config error at languages.{lang}.recordings: sheet '{sheet}' does not exist")


def settings(config: Mapping[str, Any], lang: str, stage: str) -> dict[str, Any]:
    """A stage's settings for one language: the top level, overridden by the language's own."""
    merged = dict(config.get(stage, {}))
    merged.update(config["languages"][lang].get(stage) or {})
    return merged


def safe_id(name: str) -> str:
    """A suggested replacement for an unusable recording id."""
    cleaned = _UNSAFE_ID_CHARS.sub("_", name).strip().lstrip(".-")
    return cleaned or "recording"


def check_recording_id(rec_id: str, source: str | Path) -> None:
    if not rec_id or _UNSAFE_ID_CHARS.search(rec_id) or rec_id.startswith((".", "-")) or rec_id != rec_id.strip():
        raise ConfigError(
            f"recording '{source}': its id {rec_id!r} cannot be used in output paths "
            f"(braces, slashes, control characters, leading '.', '-' or spaces); rename it, e.g. to '{safe_id(rec_id)}'"
        )
    if unicodedata.normalize("NFC", rec_id) != rec_id:
        raise ConfigError(
            f"recording '{source}': its id is not in Unicode NFC form, so it would not match on every file system; "
            f"rename it to '{unicodedata.normalize('NFC', rec_id)}'"
        )


def _discover(audio_dir: Path, extensions: Iterable[str]) -> dict[str, Path]:
    exts = {"." + e.lower() for e in extensions}
    found: dict[str, Path] = {}
    for path in sorted(audio_dir.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in exts:
            continue
        rec_id = path.stem
        check_recording_id(rec_id, path)
        if rec_id in found:
            raise ConfigError(
                f"recordings '{found[rec_id]}' and '{path}' have the same id '{rec_id}'; keep one or rename the other"
            )
        found[rec_id] = path
    return found


def _read_sheet(sheet: Path, audio_dir: Path, text_dir: Path | None,
                base: Path) -> dict[str, tuple[Path, Path | None]]:
    row_schema = load_yaml(RECORDINGS_SCHEMA_PATH)
    validator = jsonschema.Draft7Validator(row_schema)
    rows: dict[str, tuple[Path, Path]] = {}
    with open(sheet, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        for line_no, row in enumerate(reader, start=2):
            row = {k: (v if v != "" else None) for k, v in row.items() if k is not None}
            error = jsonschema.exceptions.best_match(validator.iter_errors(row))
            if error is not None:
                raise ConfigError(f"recordings sheet '{sheet}', line {line_no}: {error.message}")
            rec_id = row["recording"]
            check_recording_id(rec_id, f"{sheet}:{line_no}")
            if rec_id in rows:
                raise ConfigError(f"recordings sheet '{sheet}', line {line_no}: recording '{rec_id}' is listed twice")
            audio = audio_dir / row["audio"]
            if not (base / audio).is_file():
                raise ConfigError(f"recordings sheet '{sheet}', line {line_no}: audio file '{audio}' does not exist")
            text = None if text_dir is None else text_dir / (row.get("text") or f"{rec_id}.docx")
            rows[rec_id] = (audio, text)
    return rows


def discover_recordings(config: Mapping[str, Any], base_dir: str | Path = ".") -> dict[str, dict[str, Recording]]:
    """``{lang: {recording id: Recording}}`` for every selected language, sorted by id."""
    base = Path(base_dir)
    result: dict[str, dict[str, Recording]] = {}
    for lang in selected_languages(config):
        lang_cfg = config["languages"][lang]
        audio_dir = Path(lang_cfg["audio_dir"])
        text_dir = Path(lang_cfg["text_dir"]) if lang_cfg.get("text_dir") else None
        if lang_cfg.get("recordings"):
            pairs = _read_sheet(base / lang_cfg["recordings"], audio_dir, text_dir, base)
        else:
            # Paths stay as the config spells them (relative to the working directory) so that
            # Snakemake's inputs and the logs show the user's own paths.
            found = _discover(base / audio_dir, config["audio_extensions"])
            pairs = {rec: (audio_dir / path.name, None if text_dir is None else text_dir / f"{rec}.docx")
                     for rec, path in found.items()}
        if not pairs:
            raise ConfigError(
                f"config error at languages.{lang}.audio_dir: no recordings found in '{audio_dir}' "
                f"(looked for *.{', *.'.join(config['audio_extensions'])})"
            )
        result[lang] = {rec: Recording(lang, rec, audio, text) for rec, (audio, text) in sorted(pairs.items())}
    return result


def hub_folder_name(model_id: str) -> str:
    """The folder under models_dir that download_models fills for a hub id ("org/name" -> "org__name")."""
    # Same mapping as tala.hub.model_dir_name (which imports torch; the Snakefile must not).
    return model_id.strip().strip("/").replace("/", "__")


def load_workflow_config(config: Mapping[str, Any], base_dir: str | Path = ".") -> tuple[dict[str, Any], dict[str, dict[str, Recording]]]:
    """Everything the Snakefile needs: the validated config and the recordings, or one ConfigError."""
    validated = validate_config(config)
    check_folders(validated, base_dir)
    return validated, discover_recordings(validated, base_dir)


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    # Same recursive merge Snakemake applies to --configfile over the Snakefile's configfile.
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tala.config",
        description="Validate config files as the workflow does (later files override earlier ones, "
        "like snakemake --configfile) and list the recordings that would be processed.",
    )
    parser.add_argument("configs", nargs="+", type=Path, help="config YAML files, e.g. config/config.yaml config/demo.yaml")
    args = parser.parse_args(argv)
    merged: dict[str, Any] = {}
    for path in args.configs:
        _merge(merged, load_yaml(path) or {})
    try:
        _, recordings = load_workflow_config(merged)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    for lang, recs in recordings.items():
        texts = [rec for rec in recs.values() if rec.text is not None]
        missing = [rec for rec in texts if not rec.text.is_file()]
        what = "audio only, no texts" if not texts else f"{len(missing)} without their text"
        print(f"{lang}: {len(recs)} recording(s), {what}")
        for rec in recs.values():
            mark = "" if rec.text is None or rec.text.is_file() else "\t(text missing: transcribed, not aligned)"
            print(f"  {rec.id}\t{rec.audio}\t{rec.text if rec.text is not None else '-'}{mark}")
    print("(audio and texts are inspected when the workflow runs: see results/<lang>/report/problems.html)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
