"""Pick the torch device and dtype for inference: one place for the cuda -> mps -> cpu rule.

Apple's MPS backend lacks some operators, CTC loss among them. With ``PYTORCH_ENABLE_MPS_FALLBACK=1``
torch runs those on the CPU instead of failing, but it reads the variable once, when torch is first
imported. So this module sets it (:func:`ensure_mps_fallback`) when imported (it imports torch only
inside its functions), and every step that may run on MPS imports this module (or calls the function) before torch:

    from tala.device import ensure_mps_fallback
    ensure_mps_fallback()
    import torch  # noqa: E402

The Snakemake profile for MPS (``profiles/mps/``) exports the variable too, for code outside tala.
A value already set (say ``0`` to find out which operators fall back) is left alone.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

MPS_FALLBACK_ENV = "PYTORCH_ENABLE_MPS_FALLBACK"


def ensure_mps_fallback() -> bool:
    """Set PYTORCH_ENABLE_MPS_FALLBACK=1 unless already set; False if torch was imported before.

    Harmless on machines without MPS. When torch is already imported the setting may come too late
    (torch reads it at import); this returns False then, so a caller can warn.
    """
    os.environ.setdefault(MPS_FALLBACK_ENV, "1")
    return "torch" not in sys.modules


ensure_mps_fallback()

from tala.errors import InputError  # noqa: E402

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions: importing this module only sets the variable, so that
# torch-free steps (reading a vocabulary, the text step) can import tala.hub without paying for torch.

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
DTYPE_CHOICES = ("auto", "float32", "float16", "bfloat16")


class DeviceError(InputError):
    """A device or dtype was asked for that this machine cannot provide (one line, via run_cli)."""


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """The device types usable here, in the order ``auto`` tries them."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if _mps_available():
        found.append("mps")
    found.append("cpu")
    return found


def pick_device(preference: str = "auto") -> torch.device:
    """``auto``: cuda, then mps, then cpu. ``cuda``/``mps``/``cpu`` force one, or raise DeviceError.

    A specific CUDA device (``cuda:1``) is accepted too; plain ``cuda`` means the current one, so
    that CUDA_VISIBLE_DEVICES set by Slurm decides.
    """
    import torch

    preference = (preference or "auto").strip().lower()
    if preference == "auto":
        return torch.device(available_devices()[0])
    kind = preference.split(":", 1)[0]
    if kind not in DEVICE_CHOICES:
        raise DeviceError(f"device {preference}", f"unknown device (choose one of {', '.join(DEVICE_CHOICES)})")
    if kind == "cuda":
        if not torch.cuda.is_available():
            reason = ("this torch build has no CUDA support" if torch.version.cuda is None
                      else "no CUDA GPU visible (check CUDA_VISIBLE_DEVICES and the driver)")
            raise DeviceError(f"device {preference}", f"not available: {reason}; use --device auto or cpu")
        device = torch.device(preference)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {preference}",
                              f"not available: only {torch.cuda.device_count()} CUDA device(s) visible")
        return device
    if kind == "mps" and not _mps_available():
        raise DeviceError(f"device {preference}", "not available: MPS needs Apple silicon and a macOS torch "
                                                  "build; use --device auto or cpu")
    return torch.device(kind)


def pick_dtype(device: torch.device | str, preference: str = "auto") -> torch.dtype:
    """The inference dtype: ``auto`` is float16 on CUDA and float32 on CPU and MPS.

    Why: on CUDA, half precision halves memory and runs on the tensor cores, and wav2vec2 CTC
    models are routinely run in float16 without a change in the greedy transcript. On the CPU,
    float16 kernels are slow or emulated and bfloat16 pays off only on CPUs with AMX/AVX512-BF16,
    while both coarsen the stored log-probabilities the aligner works on. On MPS, float16 has had
    numerical problems in layer norms and the CPU fallbacks run in float32 anyway.
    ``bfloat16`` is honoured where the device supports it (CUDA: Ampere or newer; the CPU); it is
    never chosen by ``auto``, as float16 is as fast for inference and a little more precise.
    """
    import torch

    device = torch.device(device)
    preference = (preference or "auto").strip().lower()
    if preference == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if preference not in DTYPE_CHOICES:
        raise DeviceError(f"dtype {preference}", f"unknown dtype (choose one of {', '.join(DTYPE_CHOICES)})")
    if preference == "bfloat16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise DeviceError("dtype bfloat16", f"not supported by {torch.cuda.get_device_name(device)}; "
                                                "use --dtype float16")
        if device.type == "mps":
            raise DeviceError("dtype bfloat16", "not supported on MPS in this workflow; use --dtype float32")
    return getattr(torch, preference)


def describe_device(device: torch.device) -> str:
    """A short human description for logs and JSON (e.g. ``cuda:0 (NVIDIA H100 80GB HBM3)``)."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type
