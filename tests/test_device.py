"""tala.device: cuda -> mps -> cpu, forced devices that are missing, dtypes, and the MPS fallback switch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import tala.device as device_module
from conftest import REPO
from tala.device import DeviceError, ensure_mps_fallback, pick_device, pick_dtype
from tala.errors import InputError


def fake_hardware(monkeypatch, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(device_module, "_mps_available", lambda: mps)


@pytest.mark.parametrize("cuda,mps,expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    fake_hardware(monkeypatch, cuda, mps)
    assert pick_device("auto") == torch.device(expected)
    assert pick_device() == torch.device(expected)


def test_cpu_is_always_there():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(" CPU ") == torch.device("cpu")


@pytest.mark.parametrize("forced", ["cuda", "mps"])
def test_forcing_a_missing_device_is_a_clear_error(monkeypatch, forced):
    fake_hardware(monkeypatch, False, False)
    with pytest.raises(DeviceError, match=rf"^device {forced}: not available: .*use --device auto or cpu"):
        pick_device(forced)
    assert issubclass(DeviceError, InputError)  # one line through run_cli


def test_unknown_device():
    with pytest.raises(DeviceError, match="unknown device"):
        pick_device("tpu")


def test_forced_device_is_kept_when_present(monkeypatch):
    fake_hardware(monkeypatch, False, True)
    assert pick_device("mps") == torch.device("mps")


def test_dtype_auto_is_half_on_cuda_only():
    assert pick_dtype(torch.device("cuda"), "auto") == torch.float16
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype("mps") == torch.float32


def test_explicit_dtypes():
    assert pick_dtype("cpu", "bfloat16") == torch.bfloat16
    assert pick_dtype("cpu", "float32") == torch.float32
    with pytest.raises(DeviceError, match="unknown dtype"):
        pick_dtype("cpu", "int8")
    with pytest.raises(DeviceError, match="bfloat16"):
        pick_dtype("mps", "bfloat16")


def test_ensure_mps_fallback_sets_but_never_overrides(monkeypatch):
    monkeypatch.delenv("PYTORCH_ENABLE_MPS_FALLBACK", raising=False)
    ensure_mps_fallback()
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"
    monkeypatch.setenv("PYTORCH_ENABLE_MPS_FALLBACK", "0")
    ensure_mps_fallback()
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "0"


@pytest.mark.parametrize("module", ["tala.device", "tala.hub", "tala.asr.transcribe"])
def test_fallback_is_set_before_torch_is_imported(module):
    # Records the variable at the moment torch's import starts, in a fresh interpreter.
    probe = (
        "import os, sys\n"
        "class Watch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            print('at torch import:', os.environ.get('PYTORCH_ENABLE_MPS_FALLBACK'))\n"
        "            sys.meta_path.remove(self)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Watch())\n"
        f"import {module}\n"
        "import torch\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_ENABLE_MPS_FALLBACK"}
    env["PYTHONPATH"] = str(REPO / "scripts")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert "at torch import: 1" in out.stdout


@pytest.mark.parametrize("module", ["tala.device", "tala.hub"])
def test_device_and_hub_import_without_torch(module):
    """The text step reads a model's vocabulary through tala.hub: it must not pay for importing torch."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    out = subprocess.run([sys.executable, "-c", f"import sys, {module}; print('torch' in sys.modules)"],
                         capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"
