"""tala.asr.download_models without a network: file patterns, local folders, offline errors, a simulated hub."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import tala.asr.download_models as dm
from tala.errors import InputError, run_cli
from tala.hub import ModelError, resolve_model

HUB_FILES = [
    "config.json", "preprocessor_config.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
    "model.safetensors", "pytorch_model.bin", "README.md", ".gitattributes",
    "adapter.smo.safetensors", "adapter.por.safetensors", "adapter.eng.safetensors", "adapter.fra.safetensors",
    "adapter.smo.bin",
]


def local_model(folder: Path, adapters=("smo", "por")) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "vocab.json").write_text(json.dumps({lang: {"<pad>": 0} for lang in adapters}))
    for lang in adapters:  # whole safetensors files: the checks open them
        save_file({"weight": torch.zeros(2)}, str(folder / f"adapter.{lang}.safetensors"))
    return folder


def fake_hub(monkeypatch, files=HUB_FILES, calls=None):
    """A snapshot_download that 'downloads' the matching files of a fake repository."""
    import huggingface_hub

    def snapshot_download(repo_id, *, local_dir, allow_patterns=None, revision=None, **kwargs):
        if calls is not None:
            calls.append(list(allow_patterns))
        folder = Path(local_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name in files:
            if allow_patterns is None or any(fnmatch.fnmatch(name, p) for p in allow_patterns):
                if name.endswith(".safetensors"):  # whole files: loaders check that they open
                    save_file({"weight": torch.zeros(2)}, str(folder / name))
                else:
                    (folder / name).write_text(name)
        return str(folder)

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda repo, revision=None: list(files))


def test_allow_patterns_take_only_what_inference_needs():
    patterns = dm.allow_patterns(["smo", "por"])
    chosen = [f for f in HUB_FILES if any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert chosen == ["config.json", "preprocessor_config.json", "tokenizer_config.json", "special_tokens_map.json",
                      "vocab.json", "model.safetensors", "adapter.smo.safetensors", "adapter.por.safetensors"]
    assert "adapter.*.safetensors" not in patterns
    assert any(fnmatch.fnmatch("model-00001-of-00002.safetensors", p) for p in patterns)


def test_names_and_marker_paths():
    assert dm.model_folder("facebook/mms-1b-all", "resources/models") == Path("resources/models/facebook__mms-1b-all")
    assert dm.marker_path("facebook/mms-1b-all", "m") == Path("m/facebook__mms-1b-all/.complete")


def test_local_folder_needs_no_download(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("network used"))
    model = local_model(tmp_path / "my model")
    record = dm.download_model(str(model), ["smo"], tmp_path / "models")
    marker = dm.marker_path(str(model), tmp_path / "models")
    assert json.loads(marker.read_text()) == record
    assert record["downloaded"] is False and "nothing to download" in record["note"]
    assert record["adapters"] == ["smo"] and "config.json" in record["files"]


def test_local_folder_with_a_missing_adapter(tmp_path):
    model = local_model(tmp_path / "m")
    with pytest.raises(ModelError, match=r"no language adapter 'fra'.*adapters available: por, smo"):
        dm.download_model(str(model), ["fra"], tmp_path / "models")


def test_missing_local_folder(tmp_path):
    with pytest.raises(ModelError, match="model folder does not exist"):
        dm.download_model(str(tmp_path / "nope"), [], tmp_path / "models")


def test_offline_is_one_clear_error(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    code = run_cli(dm.main, ["--model", "facebook/mms-1b-all", "--adapters", "smo",
                             "--models-dir", str(tmp_path / "models")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith("error: facebook/mms-1b-all: cannot download: the Hugging Face hub is offline")
    assert "snakemake download_models" in err
    assert not dm.marker_path("facebook/mms-1b-all", tmp_path / "models").exists()


def test_simulated_download_writes_the_marker_last(tmp_path, monkeypatch):
    calls = []
    fake_hub(monkeypatch, calls=calls)
    models = tmp_path / "models"
    record = dm.download_model("facebook/mms-1b-all", ["smo", "por", "smo"], models, revision="main")
    folder = models / "facebook__mms-1b-all"
    assert calls == [dm.allow_patterns(["por", "smo"])]  # one download, no pickles
    assert record["files"] == sorted(["adapter.por.safetensors", "adapter.smo.safetensors", "config.json",
                                      "model.safetensors", "preprocessor_config.json", "special_tokens_map.json",
                                      "tokenizer_config.json", "vocab.json"])
    assert record["adapters"] == ["por", "smo"] and record["downloaded"] is True
    assert record["path"] == str(folder) and record["revision"] == "main"
    assert json.loads(dm.marker_path("facebook/mms-1b-all", models).read_text()) == record
    # transcribe then finds the downloaded copy before the hub.
    assert resolve_model("facebook/mms-1b-all", models) == str(folder)


def test_offline_rerun_with_a_complete_marker_is_fine(tmp_path, monkeypatch):
    import huggingface_hub

    fake_hub(monkeypatch)
    models = tmp_path / "models"
    first = dm.download_model("facebook/mms-1b-all", ["smo", "por"], models)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert dm.download_model("facebook/mms-1b-all", ["smo"], models) == first
    with pytest.raises(ModelError, match="offline"):
        dm.download_model("facebook/mms-1b-all", ["fra", "smo"], models)


def test_pickle_only_repository_falls_back_to_bin(tmp_path, monkeypatch):
    calls = []
    files = ["config.json", "vocab.json", "pytorch_model.bin", "adapter.smo.bin"]
    fake_hub(monkeypatch, files=files, calls=calls)
    record = dm.download_model("org/old-model", ["smo"], tmp_path / "models")
    assert record["files"] == ["adapter.smo.bin", "config.json", "pytorch_model.bin", "vocab.json"]
    assert len(calls) == 2 and "pytorch_model.bin" in calls[1]


def test_unknown_adapter_on_the_hub_lists_the_available_ones(tmp_path, monkeypatch):
    fake_hub(monkeypatch)
    with pytest.raises(ModelError, match=r"no language adapter for xyz in this model; adapters available: "
                                         r"eng, fra, por, smo"):
        dm.download_model("facebook/mms-1b-all", ["smo", "xyz"], tmp_path / "models")
    assert not dm.marker_path("facebook/mms-1b-all", tmp_path / "models").exists()


def test_unknown_repository_is_one_line(tmp_path, monkeypatch, capsys):
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    class Response:  # what the error reads from an HTTP response
        headers: dict = {}
        request = None

    def not_found(*args, **kwargs):
        raise RepositoryNotFoundError("404 Client Error.\n\nRepository Not Found for url: ...", response=Response())

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_found)
    code = run_cli(dm.main, ["--model", "nobody/nothing", "--models-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err == "error: nobody/nothing: no such model on the Hugging Face hub (or it is private: " \
                                "log in with `hf auth login`)"


def test_language_codes_cannot_glob(tmp_path):
    with pytest.raises(InputError, match="not a language code"):
        dm.download_model("facebook/mms-1b-all", ["*"], tmp_path)
