"""Find and load a wav2vec2 CTC model (MMS style, with language adapters), with one-line errors.

A model is named by a Hugging Face id (``facebook/mms-1b-all``) or a local folder. Compute nodes
often have no internet, so ``python -m tala.asr.download_models`` fetches hub models on the login node
into ``<models_dir>/<id with "/" -> "__">``; :func:`resolve_model` prefers that copy over the hub.

MMS models keep one small adapter per language: ``adapter.<lang>.safetensors`` holds the attention
adapters and the output layer (its size is the language's alphabet), and ``vocab.json`` is nested,
``{"<lang>": {"<token>": id, ...}, ...}``. Loading a language means loading the base model, then
``model.load_adapter(lang)`` (which also resizes ``lm_head``) and
``tokenizer.set_target_lang(lang)``. In transformers 5.x, ``from_pretrained(..., target_lang=lang)``
works too, with or without ``ignore_mismatched_sizes=True`` (the adapter is loaded after the base
weights, from ``tie_weights``); we call ``load_adapter`` ourselves to check the language first and
give one clear error listing the languages there are, instead of transformers' "does not appear
to have a file named adapter.xyz.bin".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tala.device import ensure_mps_fallback

ensure_mps_fallback()  # before anything imports torch (load_ctc_model does, when called)

from tala.ctc_text import CtcVocabulary, read_model_vocabulary  # noqa: E402
from tala.errors import InputError  # noqa: E402

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
ADAPTER_PREFIX = "adapter."
ADAPTER_SUFFIXES = (".safetensors", ".bin")
# One error line may list this many languages (mms-1b-all has 1,162 adapters).
MAX_LISTED_LANGUAGES = 100


class ModelError(InputError):
    """A model that cannot be found or loaded: ``error: <model>: <reason>`` on one line."""


def model_dir_name(model_id: str) -> str:
    """The folder name download_models uses for a hub id: ``facebook/mms-1b-all`` -> ``facebook__mms-1b-all``."""
    return model_id.strip().strip("/").replace("/", "__")


def looks_like_path(model: str) -> bool:
    """True for strings meant as a local folder rather than a hub id (``org/name``).

    Absolute, ``./``, ``../`` and ``~`` paths, more than one ``/``, a trailing ``/``, a backslash,
    or a first component that exists here (``mymodels/run3`` with ``mymodels/`` present).
    """
    if model.startswith(("/", "./", "../", "~", ".\\")) or model in (".", "..") or "\\" in model:
        return True
    if model.endswith("/") or model.count("/") > 1:
        return True
    head = model.split("/", 1)[0]
    return "/" in model and Path(head).exists()


def beside(folder: str | Path, name: str) -> str:
    """A base model a saved recognizer's config names: a folder beside the config (``name``
    relative to ``folder``, as a stand-in names its parts) when there is one, else ``name`` as
    written (a hub id, or a path from the working directory). Not made absolute, so that a results
    folder still loads after the project is moved."""
    candidate = Path(folder) / name
    return str(candidate) if not Path(name).is_absolute() and candidate.is_dir() else name


def resolve_model(model: str, models_dir: str | Path | None = None) -> str:
    """Where to load ``model`` from: a local folder, the download_models copy, or the hub id itself.

    1. ``model`` is an existing path: that folder (checked to hold a config.json).
    2. ``<models_dir>/<model with "/" -> "__">`` exists (written by download_models): that folder.
    3. Otherwise the hub id, unchanged. Offline, it must be in the Hugging Face cache.

    Raises ModelError for a path that does not exist (or anything that looks like one), for a
    folder without config.json, and for a hub id that cannot be had offline.
    """
    model = model.strip()
    if not model:
        raise ModelError("--model", "empty model name")
    path = Path(model).expanduser()
    if path.exists():
        return str(_check_model_folder(path))
    if looks_like_path(model):
        raise ModelError(model, _missing_path_reason(path))
    if models_dir is not None:
        downloaded = Path(models_dir) / model_dir_name(model)
        if downloaded.exists():
            if not (downloaded / CONFIG_FILE).is_file():
                raise ModelError(downloaded, "incomplete download (no config.json): run `snakemake download_models` "
                                             "again on a machine with internet")
            check_weights(downloaded)
            return str(downloaded)
    if _hub_is_offline() and _cached_snapshot(model) is None:
        where = f"neither {Path(models_dir) / model_dir_name(model)} nor " if models_dir is not None else ""
        raise ModelError(model, f"model not downloaded: {where}the Hugging Face cache has it, and the hub is "
                                "offline (HF_HUB_OFFLINE=1); run `snakemake download_models` on a machine "
                                "with internet first")
    return model


def _missing_path_reason(path: Path) -> str:
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent != path and str(parent) not in ("", "."):
        return f"model folder does not exist (the path exists only up to {parent}/)"
    return "model folder does not exist"


def _check_model_folder(path: Path) -> Path:
    if not path.is_dir():
        raise ModelError(path, "not a model folder: a file, expected a Hugging Face model folder with config.json")
    if not (path / CONFIG_FILE).is_file():
        raise ModelError(path, "not a Hugging Face model folder: no config.json")
    check_weights(path)
    return path


MODEL_WEIGHTS = "model*.safetensors"  # a model's own weights: model.safetensors, or its shards


def check_weights(folder: str | Path, *files: str, required: tuple[str, ...] = ()) -> None:
    """The safetensors files a loader is about to read from a local ``folder`` are whole: each
    opens and its header covers the file. A copy or download cut short (or, for ``required``, a
    file missing) is one ModelError naming the file and the reason, not a traceback from inside
    transformers or peft. ``files``: names or glob patterns in the folder, by default the model's
    own weights (:data:`MODEL_WEIGHTS`; not every adapter file of a multilingual model); one that
    matches nothing is left to the loader (a .bin checkpoint, an optional part)."""
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    for name in required:
        if not (folder / name).is_file():
            raise ModelError(folder / name, "missing: the model folder is incomplete (copy or save it again)")
    for pattern in (*(files or (MODEL_WEIGHTS,)), *required):
        for path in sorted(folder.glob(pattern)):
            try:
                with safe_open(str(path), framework="pt"):
                    pass
            except (SafetensorError, OSError) as err:
                raise ModelError(path, f"damaged weights file ({_first_line(err)}): "
                                       "copy or download it again") from None


def _hub_is_offline() -> bool:
    import huggingface_hub

    return huggingface_hub.is_offline_mode()


def _cached_snapshot(repo_id: str) -> Path | None:
    """The Hugging Face cache's snapshot folder of ``repo_id`` if its config.json is cached."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        found = try_to_load_from_cache(repo_id, CONFIG_FILE)
    except (HFValidationError, ValueError):
        return None
    return Path(found).parent if isinstance(found, str) else None


# ---------------------------------------------------------------------------------------------
# Languages
# ---------------------------------------------------------------------------------------------

def adapter_files(folder: str | Path) -> dict[str, Path]:
    """Language -> adapter weight file in ``folder`` (safetensors preferred over .bin)."""
    found: dict[str, Path] = {}
    for suffix in reversed(ADAPTER_SUFFIXES):  # safetensors last, so it wins
        for path in Path(folder).glob(f"{ADAPTER_PREFIX}*{suffix}"):
            found[path.name[len(ADAPTER_PREFIX):-len(suffix)]] = path
    return dict(sorted(found.items()))


def vocab_languages(folder: str | Path) -> list[str] | None:
    """The languages of a nested (multilingual) vocab.json; None if the vocabulary is flat or absent."""
    path = Path(folder) / VOCAB_FILE
    if not path.is_file():
        return None
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(path, f"unreadable vocabulary: {err}") from None
    if isinstance(vocab, dict) and vocab and all(isinstance(v, dict) for v in vocab.values()):
        return sorted(vocab)
    return None


def _language_list(languages: list[str]) -> str:
    if not languages:
        return "none"
    shown = ", ".join(languages[:MAX_LISTED_LANGUAGES])
    more = len(languages) - MAX_LISTED_LANGUAGES
    return shown + (f" and {more} more" if more > 0 else "")


def check_adapter(folder: str | Path, adapter: str, label: str | None = None) -> None:
    """Raise one ModelError listing the available languages unless ``adapter`` has weights and
    vocabulary, or naming its weights file when that is damaged (:func:`check_weights`)."""
    files = adapter_files(folder)
    weights = sorted(files)
    vocab = vocab_languages(folder)
    usable = [lang for lang in weights if vocab is None or lang in vocab]
    if adapter in usable:
        if files[adapter].suffix == ".safetensors":
            check_weights(folder, files[adapter].name)
        return
    label = label or str(folder)
    if vocab is not None and adapter in vocab:
        detail = "the vocabulary has it, but there is no adapter.{0}.safetensors".format(adapter)
    elif adapter in weights:
        detail = "there is adapter.{0}.safetensors, but the nested vocab.json has no {0!r}".format(adapter)
    else:
        detail = "no such language"
    listing = f"adapters available: {_language_list(usable)}"
    if vocab is not None and set(vocab) != set(weights):
        listing += (f" (adapter weights for: {_language_list(weights)}; "
                    f"vocabulary for: {_language_list(vocab)})")
    raise ModelError(label, f"no language adapter {adapter!r} ({detail}); {listing}")


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

def load_ctc_model(model: str, adapter: str | None, device, dtype=None):
    """Load ``(Wav2Vec2ForCTC, Wav2Vec2Processor)`` in eval mode on ``device``, language ``adapter`` set.

    ``model`` is what :func:`resolve_model` returned: a local folder or a hub id (offline: taken
    from the Hugging Face cache). With ``adapter``, the adapter weights and the nested vocabulary
    must both have the language, else one ModelError lists the languages available. A model without
    adapter layers and with a flat vocabulary (an ordinary fine-tuned wav2vec2) ignores ``adapter``
    with a warning, so a workflow that always passes the language still works with it.
    """
    import torch
    from transformers import Wav2Vec2ForCTC

    dtype = torch.float32 if dtype is None else dtype
    label = model
    folder = Path(model).expanduser()
    if folder.exists():
        _check_model_folder(folder)
    elif _hub_is_offline():
        cached = _cached_snapshot(model)
        if cached is None:
            raise ModelError(model, "model not downloaded and the hub is offline (HF_HUB_OFFLINE=1); run "
                                    "`snakemake download_models` on a machine with internet first")
        folder = cached
    else:
        folder = None  # an online hub id: transformers downloads what it needs

    source = str(folder) if folder is not None else model
    try:
        config = _load_config(source)
    except OSError as err:
        raise ModelError(label, f"cannot load the model config: {_first_line(err)}") from None
    has_adapters = getattr(config, "adapter_attn_dim", None) is not None
    nested = vocab_languages(folder) if folder is not None else None

    if adapter and nested is None and (not has_adapters or (folder is not None and not adapter_files(folder))):
        # A single-language model (flat vocabulary) whose weights already are its language.
        print(f"warning: {label}: a single-language model without adapter files; --adapter {adapter} ignored",
              file=sys.stderr)
        adapter = None
    if adapter and not has_adapters:
        raise ModelError(label, f"the model has no language adapter layers (config.adapter_attn_dim is unset), "
                                f"so adapter {adapter!r} cannot be loaded")
    if adapter and folder is not None:
        check_adapter(folder, adapter, label)

    processor = _load_processor(source, label)
    tokenizer = processor.tokenizer
    vocab = getattr(tokenizer, "vocab", None)
    nested_tokenizer = isinstance(vocab, dict) and bool(vocab) and all(isinstance(v, dict) for v in vocab.values())
    if not adapter and nested_tokenizer and getattr(tokenizer, "target_lang", None) is None:
        languages = sorted(vocab)
        raise ModelError(label, f"multilingual model: choose a language with --adapter "
                                f"(available: {_language_list(languages)})")

    try:
        ctc_model = Wav2Vec2ForCTC.from_pretrained(source, dtype=dtype)
        if adapter:
            ctc_model.load_adapter(adapter)
    except (OSError, ValueError) as err:
        reason = _first_line(err)
        if adapter and ("adapter." in reason or "does not appear to have" in reason):
            raise ModelError(label, f"no language adapter {adapter!r} on the hub for this model ({reason})") from None
        raise ModelError(label, f"cannot load the model: {reason}") from None
    if adapter and nested_tokenizer:
        try:
            tokenizer.set_target_lang(adapter)
        except ValueError as err:
            raise ModelError(label, f"no vocabulary for language {adapter!r}: {_first_line(err)}") from None

    ctc_model.to(device)
    ctc_model.eval()
    return ctc_model, processor


def model_vocabulary(model: str, adapter: str | None = None, models_dir: str | Path | None = None) -> CtcVocabulary:
    """The CTC vocabulary of ``model`` for language ``adapter``, from its ``vocab.json`` alone.

    What the text step needs to spell the official text with the model's letters, without loading
    the model (and without waiting for the transcription): the model is resolved as
    :func:`resolve_model` does (local folder, download_models copy, Hugging Face cache or hub).
    A nested (MMS) vocabulary without ``adapter`` takes the tokenizer's default language
    (``target_lang`` of tokenizer_config.json), as loading the tokenizer would.
    """
    resolved = resolve_model(model, models_dir)
    folder = Path(resolved)
    if not folder.is_dir():
        folder = _cached_snapshot(resolved) or _download_vocabulary(resolved)
    languages = vocab_languages(folder)
    if languages is not None and not adapter:
        adapter = _tokenizer_default_language(folder)
        if not adapter:
            raise ModelError(model, f"a multilingual vocabulary needs an adapter (a language); it has "
                                    f"{_language_list(languages)}")
    if languages is not None and adapter not in languages:
        raise ModelError(model, f"no vocabulary for language {adapter!r}; the model has {_language_list(languages)}")
    return read_model_vocabulary(folder, adapter if languages is not None else None)


def _tokenizer_default_language(folder: Path) -> str | None:
    try:
        return json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")).get("target_lang")
    except (OSError, ValueError, AttributeError):
        return None


def _download_vocabulary(repo_id: str) -> Path:
    """The folder of ``repo_id``'s vocab.json (and tokenizer config) fetched from the hub."""
    from huggingface_hub import hf_hub_download

    try:
        path = Path(hf_hub_download(repo_id, VOCAB_FILE))
        try:
            hf_hub_download(repo_id, "tokenizer_config.json")
        except Exception:  # noqa: BLE001 - optional: only a default language comes from it
            pass
    except Exception as err:  # noqa: BLE001 - one line naming the model
        raise ModelError(repo_id, f"cannot fetch {VOCAB_FILE} from the hub: {_first_line(err)}") from None
    return path.parent


def _load_processor(source: str, label: str):
    """The model's processor; without a feature-extractor config, the standard wav2vec2 one."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    try:
        return Wav2Vec2Processor.from_pretrained(source)
    except (OSError, ValueError, TypeError) as err:
        if "feature extractor" not in str(err):
            raise ModelError(label, f"cannot load the processor (tokenizer + feature extractor): "
                                    f"{_first_line(err)}") from None
    try:
        tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError) as err:
        raise ModelError(label, f"cannot load the tokenizer: {_first_line(err)}") from None
    # Every wav2vec2 CTC checkpoint we know of uses these (16 kHz, zero mean / unit variance).
    print(f"warning: {label}: no preprocessor_config.json; using the standard wav2vec2 feature extractor "
          f"(16 kHz, do_normalize=true)", file=sys.stderr)
    return Wav2Vec2Processor(feature_extractor=Wav2Vec2FeatureExtractor(), tokenizer=tokenizer)


def _load_config(source: str):
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config.from_pretrained(source)


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def weights_signature(folder: str | Path) -> list[tuple[str, int, int]]:
    """(name, size, mtime_ns) of a model folder's files: cheap identity for a resume check."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith("."))


def model_revision(folder: str | Path) -> str | None:
    """The hub commit a folder was downloaded at, from download_models' marker or the cache path."""
    folder = Path(folder)
    marker = folder / ".complete"  # written by download_models
    if marker.is_file():
        try:
            return json.loads(marker.read_text(encoding="utf-8")).get("revision")
        except ValueError:
            return None
    if folder.parent.name == "snapshots":
        return folder.name
    return None


__all__ = [
    "ModelError", "model_dir_name", "looks_like_path", "resolve_model", "adapter_files",
    "vocab_languages", "check_adapter", "load_ctc_model", "weights_signature", "model_revision",
]
