"""The demo's languages and the text its models read: codes, espeak-ng voices, alphabets, the
normalized transcript (training target and scoring reference) and MMS-style vocabularies."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tala.ctc_text import SPECIAL_TOKENS, WORD_DELIMITER

OKINA = "\u02bb"
# Samoan texts write the glottal stop with the okina or with any of these look-alikes.
OKINA_VARIANTS = ("'", "\u2018", "\u2019", "`", "\u02bc")
JOINT_LANG = "mul"  # ISO 639 "multiple languages": the base model's joint vocabulary


@dataclass(frozen=True)
class LanguageSpec:
    code: str  # ISO 639-3, the adapter name
    name: str  # the demo corpus folder
    voice: str  # the espeak-ng voice that reads it
    alphabet: str  # the characters of the normalized text, besides the word delimiter


SAMOAN_ALPHABET = "aāeēiīoōuūfglmnpstvhkr" + OKINA
PORTUGUESE_ALPHABET = "abcdefghijklmnopqrstuvwxyzáàâãçéêíóôõúü"
TUVALUAN_ALPHABET = "aāeēiīoōuūfghklmnpstv"

# espeak-ng has no Samoan voice; its Hawaiian one pronounces Samoan spelling well (five vowels,
# long vowels written with macrons, the glottal stop written with the okina).
SAMOAN = LanguageSpec("smo", "samoan", "haw", SAMOAN_ALPHABET)
PORTUGUESE = LanguageSpec("por", "portuguese", "pt", PORTUGUESE_ALPHABET)
LANGUAGES: dict[str, LanguageSpec] = {spec.code: spec for spec in (SAMOAN, PORTUGUESE)}
"""The demo model's languages: its recipe (``ctc_recipe``, ``pack``, ``training_speech``) reads this."""

# A corpus-only language, deliberately *not* in LANGUAGES: the demo model has no Tuvaluan adapter and
# never heard this voice. The workflow transcribes and aligns it with the Samoan adapter (Tuvaluan
# spelling is close to Samoan's) and fine-tunes a new ``tvl`` adapter on it. Read by espeak-ng's
# Hawaiian voice with the female variant ``f3``, which the demo model's training speech never used.
TUVALUAN = LanguageSpec("tvl", "tuvaluan", "haw+f3", TUVALUAN_ALPHABET)


def normalize_text(text: str, lang: str) -> str:
    """The training/eval target: NFC, lower case, punctuation turned into word breaks, okina
    look-alikes unified to U+02BB in Samoan; letters with macrons and diacritics are kept."""
    text = unicodedata.normalize("NFC", text).lower()
    if lang == "smo":
        for variant in OKINA_VARIANTS:
            text = text.replace(variant, OKINA)
    kept = [ch if ch == OKINA or unicodedata.category(ch)[0] in "LN" else " " for ch in text]
    return " ".join("".join(kept).split())


def language_vocab(alphabet: str) -> dict[str, int]:
    """MMS-style character vocabulary: blank ``<pad>`` = 0, ``<s>``, ``</s>``, ``<unk>``, ``|``, then
    the alphabet's characters in code point order."""
    tokens = [*SPECIAL_TOKENS, WORD_DELIMITER, *sorted(set(alphabet))]
    return {token: index for index, token in enumerate(tokens)}


def nested_vocab(langs: Iterable[str], joint: bool = False) -> dict[str, dict[str, int]]:
    """``{"smo": {...}, "por": {...}}`` as MMS ships it; ``joint`` adds the union ``mul``."""
    langs = list(langs)
    vocab = {lang: language_vocab(LANGUAGES[lang].alphabet) for lang in langs}
    if joint:
        vocab[JOINT_LANG] = language_vocab("".join(LANGUAGES[lang].alphabet for lang in langs))
    return vocab


def demo_truths(demo_root: Path, lang: str) -> list[dict]:
    """The ground truth of each demo chapter of ``lang`` (``<name>/truth/<rec>.json``), by recording id."""
    paths = sorted((demo_root / LANGUAGES[lang].name / "truth").glob("*.json"))
    return [json.loads(path.read_text(encoding="utf-8")) for path in paths]
