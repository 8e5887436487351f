import os
import re
import shutil
import sys
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "demo"
# The demo's languages and their MMS adapters.
DEMO_LANGUAGES = {"samoan": "smo", "portuguese": "por"}
_OKINA = re.compile(r"[ʻ'‘`’]")
sys.path.insert(0, str(REPO / "scripts"))

# No test may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


def normalize_demo_text(text: str) -> str:
    """NFC, lower case, okina variants as ʻ, punctuation and hyphens as spaces, spaces collapsed."""
    text = _OKINA.sub("ʻ", unicodedata.normalize("NFC", text).lower())
    kept = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return " ".join(kept.split())


def demo_truth_ids() -> list[tuple[str, str]]:
    """(language folder, recording) of every demo chapter with ground truth."""
    return [(lang, path.stem) for lang in DEMO_LANGUAGES for path in sorted((DEMO / lang / "truth").glob("*.json"))]


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (tiny models only lose from threads on shared cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
