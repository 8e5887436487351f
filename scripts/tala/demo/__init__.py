"""The demo corpus and the demo models: seeded, resumable recipes that synthesize speech (espeak-ng)
and really train the small stand-ins shipped in resources/demo.

Entry points: ``python -m tala.demo.corpus`` (the corpus) and ``python -m tala.demo.model`` (the
tiny MMS-style CTC model). Shared by the recipes:

- ``text``: the languages (codes, voices, alphabets), normalized text, MMS-style vocabularies;
- ``speech``: espeak-ng synthesis, trimming and tapering, audio stored as the corpus stores it;
- ``chapters``: the corpus's chapter texts and how each is stored; ``docx_chapter``: their DOCX;
- ``sentences`` and ``training_speech``: training texts and the utterances synthesized from them.

The CTC model's own parts: ``ctc_recipe`` (config and staged training), ``evaluate`` (greedy CER
on the demo chapters), ``pack`` and ``card`` (the shipped folder and its README).
"""

from pathlib import Path

DEMO_ROOT = Path(__file__).resolve().parents[3] / "resources" / "demo"
