"""Fetch a hub model and its language adapters into a local folder, for compute nodes without internet.

    python -m tala.asr.download_models --model facebook/mms-1b-all --adapters smo por
                                   [--models-dir resources/models] [--revision main] [--marker PATH]

Downloads into ``<models_dir>/<id with "/" -> "__">`` (where :func:`tala.hub.resolve_model`
looks first) only what CTC inference needs: the configuration, tokenizer and feature-extractor
files, the main weights, and ``adapter.<lang>.safetensors`` for each language asked for; all of
mms-1b-all's 1,162 adapters would be 2.5 GB more. Safetensors are preferred; a repository with
only pickled ``.bin`` weights gets those (transformers loads them with ``weights_only=True``).

The marker ``<models_dir>/<name>/.complete`` (JSON: model, adapters, revision, files) is written
last, so a Snakemake rule can declare it as its output and depend on it. A model given as an
existing local folder needs no download: its adapters are checked and the marker (in
``<models_dir>/<path with "/" -> "__">/``, never in the model's own folder) says so.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import tala
from tala.errors import InputError, run_cli
from tala.fileio import write_json_atomic
from tala.hub import (ModelError, adapter_files, check_adapter, looks_like_path, model_dir_name,
                         resolve_model)

METADATA_PATTERNS = [
    "config.json", "preprocessor_config.json", "processor_config.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "vocab.json",
    # the speech-LLM's bases and Moonshine: a BPE tokenizer (SmolLM2, Qwen, Moonshine), Whisper's normalizer, generation defaults
    "tokenizer.json", "merges.txt", "tokenizer.model", "normalizer.json", "generation_config.json",
]
SAFETENSORS_WEIGHTS = ["model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"]
PICKLE_WEIGHTS = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"]
# A language code goes into a glob pattern: nothing that globs or walks folders.
_LANGUAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def allow_patterns(adapters: list[str], weights: list[str] = SAFETENSORS_WEIGHTS,
                   adapter_suffix: str = ".safetensors") -> list[str]:
    """The files to fetch: metadata, main weights, and one adapter file per language."""
    return METADATA_PATTERNS + list(weights) + [f"adapter.{lang}{adapter_suffix}" for lang in adapters]


def model_folder(model: str, models_dir: str | Path) -> Path:
    return Path(models_dir) / model_dir_name(model)


MARKER_NAME = ".complete"


def marker_path(model: str, models_dir: str | Path) -> Path:
    """``<models_dir>/<name>/.complete``; hidden, so it is not mistaken for a model file."""
    return model_folder(model, models_dir) / MARKER_NAME


def _check_languages(adapters: list[str]) -> list[str]:
    for lang in adapters:
        if not _LANGUAGE.match(lang):
            raise InputError("--adapters", f"not a language code: {lang!r}")
    return sorted(dict.fromkeys(adapters))


def _has_weights(folder: Path) -> bool:
    return any(folder.glob("model*.safetensors")) or any(folder.glob("pytorch_model*.bin"))


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.name != MARKER_NAME and ".cache" not in p.relative_to(folder).parts)


def _downloaded_revision(folder: Path, fallback: str | None) -> str | None:
    """The commit the files came from, as huggingface_hub recorded it in the folder."""
    try:
        from huggingface_hub._local_folder import read_download_metadata  # no public API for this

        metadata = read_download_metadata(folder, "config.json")
        if metadata is not None and metadata.commit_hash:
            return metadata.commit_hash
    except (ImportError, OSError, AttributeError):
        pass
    return fallback


def _hub_error(model: str, err: Exception) -> ModelError:
    from huggingface_hub.errors import (GatedRepoError, HFValidationError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    if isinstance(err, GatedRepoError):
        return ModelError(model, "gated model on the Hugging Face hub: accept its terms and log in "
                                 "(`hf auth login`) first")
    if isinstance(err, RepositoryNotFoundError):
        return ModelError(model, "no such model on the Hugging Face hub (or it is private: log in with "
                                 "`hf auth login`)")
    if isinstance(err, RevisionNotFoundError):
        return ModelError(model, f"no such revision on the Hugging Face hub: {first}")
    if isinstance(err, HFValidationError):
        return ModelError(model, "not a Hugging Face model id (expected org/name) and no such local folder")
    if isinstance(err, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
        return ModelError(model, "cannot reach the Hugging Face hub (HF_HUB_OFFLINE=1 or no network): run "
                                 "`snakemake download_models` on a machine with internet")
    return ModelError(model, f"download failed: {type(err).__name__}: {first}")


def _snapshot(model: str, folder: Path, patterns: list[str], revision: str | None) -> None:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id=model, local_dir=folder, allow_patterns=patterns, revision=revision)
    except Exception as err:  # hub, HTTP-client and file errors alike become one line
        raise _hub_error(model, err) from None


def _up_to_date(marker: Path, model: str, adapters: list[str]) -> dict | None:
    """The existing marker if it already covers ``model`` and ``adapters`` and its files are there."""
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    folder = Path(record.get("path", ""))
    if record.get("model") != model or not set(adapters) <= set(record.get("adapters", [])):
        return None
    if not all((folder / name).is_file() for name in record.get("files", [])):
        return None
    return record


def _available_adapters(model: str, revision: str | None) -> list[str] | None:
    """The adapter languages in a hub repository (one API call), or None if that fails too."""
    try:
        from huggingface_hub import list_repo_files

        names = list_repo_files(model, revision=revision)
    except Exception:  # only for a better message; the caller reports the real problem
        return None
    found = set()
    for name in names:
        match = re.fullmatch(r"adapter\.([^./]+)\.(safetensors|bin)", name)
        if match:
            found.add(match.group(1))
    return sorted(found)


def download_model(model: str, adapters: list[str], models_dir: str | Path, *, revision: str | None = None,
                   marker: str | Path | None = None) -> dict:
    """Make ``model`` and its ``adapters`` available offline; write and return the marker."""
    adapters = _check_languages(adapters)
    marker = Path(marker) if marker is not None else marker_path(model, models_dir)
    base = {"model": model, "adapters": adapters, "tool": {"tala": tala.__version__}}

    if Path(model).expanduser().exists() or looks_like_path(model):
        folder = Path(resolve_model(model, None))  # names a missing or config-less folder
        for lang in adapters:
            check_adapter(folder, lang, model)
        record = {**base, "source": "local folder", "path": str(folder), "revision": None,
                  "downloaded": False, "files": _files(folder),
                  "note": "a local folder: nothing to download"}
        write_json_atomic(marker, record)
        return record

    import huggingface_hub

    folder = model_folder(model, models_dir)
    if huggingface_hub.is_offline_mode():
        # Offline, snapshot_download would quietly return whatever partial folder is there.
        existing = _up_to_date(marker, model, adapters)
        if existing is not None:
            return existing
        raise ModelError(model, "cannot download: the Hugging Face hub is offline here (HF_HUB_OFFLINE=1); "
                                "run `snakemake download_models` on a machine with internet")
    _snapshot(model, folder, allow_patterns(adapters), revision)
    if not _has_weights(folder):
        # No safetensors in the repository: take the pickled weights (loaded with weights_only=True).
        _snapshot(model, folder, allow_patterns(adapters, PICKLE_WEIGHTS, ".bin"), revision)
    missing = [lang for lang in adapters if lang not in adapter_files(folder)]
    if missing:
        _snapshot(model, folder, [f"adapter.{lang}.bin" for lang in missing], revision)
        missing = [lang for lang in adapters if lang not in adapter_files(folder)]
    if not (folder / "config.json").is_file() or not _has_weights(folder):
        raise ModelError(model, f"the download has no config.json or no model weights (in {folder}): "
                                "not a transformers model?")
    if missing:
        available = _available_adapters(model, revision)
        listing = (f"; adapters available: {', '.join(available) if available else 'none'}"
                   if available is not None else "")
        raise ModelError(model, f"no language adapter for {', '.join(missing)} in this model{listing}")

    record = {**base, "source": "huggingface hub", "path": str(folder),
              "revision": _downloaded_revision(folder, revision), "requested_revision": revision,
              "downloaded": True, "files": _files(folder),
              "tool": {**base["tool"], "huggingface_hub": huggingface_hub.__version__}}
    write_json_atomic(marker, record)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tala.asr.download_models",
        description="Download a Hugging Face CTC model and its language adapters into a local folder, "
                    "for machines without internet; writes a .complete marker last.")
    parser.add_argument("--model", required=True, help="Hugging Face id (or a local folder: nothing to download)")
    parser.add_argument("--adapters", nargs="*", default=[], metavar="LANG",
                        help="language adapters to fetch, e.g. smo por")
    parser.add_argument("--models-dir", default="resources/models", help="where models go (default: %(default)s)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    parser.add_argument("--marker", default=None,
                        help="marker file to write last (default: <models-dir>/<name>/.complete)")
    args = parser.parse_args(argv)

    record = download_model(args.model, args.adapters, args.models_dir, revision=args.revision,
                            marker=args.marker)
    what = "nothing to download (local folder)" if not record["downloaded"] else \
        f"{len(record['files'])} files at revision {record['revision']}"
    print(f"download_models: {args.model} [{', '.join(record['adapters']) or 'no adapters'}]: {what} -> "
          f"{record['path']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
