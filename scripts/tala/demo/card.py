"""The demo model's card (the shipped folder's ``README.md``), written from the run's own numbers:
``training.json``'s record of the recipe, data and stages, and the evaluation on the demo chapters."""

from __future__ import annotations

from tala.demo.text import LANGUAGES, PORTUGUESE_ALPHABET, SAMOAN_ALPHABET, language_vocab
from tala.demo.training_speech import NOISE_RMS_DBFS, PEAK_DBFS, PITCH, SPEED_WPM


def _valid_cer(stage: dict) -> str:
    return "" if stage["final_eval"] is None else f"{100 * stage['final_eval']['cer']:.2f} %"


def model_card(info: dict, report: dict) -> str:
    """The README of the shipped folder, from the run's own numbers."""
    modes = list(report["modes"])
    rows = "\n".join(
        f"| {c['language']} | {c['recording']} | {c['speed_wpm']} | {c['duration_s']:.1f} | "
        + " | ".join(f"{100 * c[m]['cer']:.2f} %" for m in modes) + " |"
        for c in report["chapters"]
    )
    total = " | ".join(f"**{100 * report['summary'][m]['cer_all']:.2f} %**" for m in modes)
    data_rows = "\n".join(
        f"| {lang} ({LANGUAGES[lang].name}) | `{d['voice']}` | {d['easy_utterances']} / {d['easy_hours']:.2f} | "
        f"{d['train_utterances']} / {d['train_hours']:.2f} | "
        + (f"{d['narrative_utterances']} / {d['narrative_hours']:.2f}" if "narrative_utterances" in d else "-")
        + f" | {d['valid_utterances']} / {d['valid_hours']:.2f} | "
        f"{d['train_word_types']} | {100 * d['demo_word_types_seen_in_training']:.0f} % / "
        f"{100 * d['demo_word_tokens_seen_in_training']:.0f} % |"
        for lang, d in info["data"].items()
    )
    stage_rows = "\n".join(
        f"| {name} | {s['settings']['phase']} | {s['lang']} | {s['steps']} | {s['settings']['learning_rate']:g} | "
        f"{s['train_audio_s_seen'] / 3600:.1f} | {s['elapsed_s'] / 60:.1f} | {_valid_cer(s)} |"
        for name, s in info["stages"].items()
    )
    r = info["recipe"]
    adapter_steps = ", ".join(f"{steps} steps for {lang}" for lang, steps in r["adapter_steps"])
    return f"""# tala demo model: a tiny MMS-style CTC model for Samoan and Portuguese

A {info['parameters'] / 1e6:.2f} M parameter wav2vec2 CTC model with MMS's layout (stable layer norm,
attention adapters in every layer, one adapter and output layer per language, a nested `vocab.json`), trained
from scratch on espeak-ng speech **that never reads a sentence of the demo chapters**. It lets every stage of the
demo workflow (transcription, forced alignment, dataset cuts, ASR evaluation) run offline and be scored against
the demo's exact ground truth. It knows two espeak-ng voices and nothing else: it is a test instrument, not an
ASR model for real recordings.

## Use

```python
from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

model = Wav2Vec2ForCTC.from_pretrained("resources/demo/model")   # base + the default adapter ({info['default_adapter']})
model.load_adapter("smo")                                         # or "por": adapter.<lang>.safetensors
processor = Wav2Vec2Processor.from_pretrained("resources/demo/model")
processor.tokenizer.set_target_lang("smo")
```

Also `Wav2Vec2ForCTC.from_pretrained(path, target_lang="smo", ignore_mismatched_sizes=True)`. Input: 16 kHz mono;
output: one frame per 20 ms over the language's characters (`<pad>` = CTC blank, id 0; `|` = word break).

## Files

| file | holds |
|---|---|
| `config.json`, `model.safetensors` | the base model with the default adapter ({info['default_adapter']}) and its output layer |
| `adapter.por.safetensors`, `adapter.smo.safetensors` | per language: the attention adapters of the 4 layers and `lm_head` (the keys `load_adapter` reads) |
| `vocab.json`, `tokenizer_config.json`, `processor_config.json` | `Wav2Vec2Processor`: nested per-language character vocabulary, 16 kHz feature extractor |
| `training.json` | recipe, seed, data, per-stage settings and times, versions |
| `training_log.jsonl` | the recorded run: loss, learning rate, throughput, validation CER, per stage |
| `eval.json` | greedy CER on every demo chapter, per verse |

## Architecture

wav2vec2 (`Wav2Vec2ForCTC`, transformers {info['versions']['transformers']}): CNN feature encoder of 7 layers x 64 channels
(kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2: 20 ms frames), layer norm in each conv layer, a 4-layer pre-LN
transformer (hidden 192, 4 heads, feed-forward 768, convolutional positional embedding of width 64 in 16 groups),
attention adapters of width {r['adapter_dim']} after every layer (`adapter_attn_dim`), no masking, no dropout.
Vocabularies: Samoan {len(language_vocab(SAMOAN_ALPHABET))} tokens, Portuguese {len(language_vocab(PORTUGUESE_ALPHABET))} tokens (4 specials, `|`, the letters).

## Data

Synthesized by `tala.demo.model` with espeak-ng {info['versions']['espeak-ng']}, the same voices as the demo (`haw` reads Samoan,
`pt` Portuguese), through the demo generator's own helpers (`synthesize`, `trim_silence`, `taper_edges`):

- *easy* (the curriculum): one short sentence of 2-6 listed words, little silence, 140-185 wpm, no codec;
- *train*: random sentences of common words (typed for this model, the commonest drawn with Zipf weights) and pseudo-words built from each language's syllables
  and spelling (Samoan (C)V syllables with macrons, okina and reduplication; Portuguese onsets, nuclei, codas,
  accents and endings); a sentence sharing 4 consecutive words with any demo verse or heading is rejected;
- 1-7 sentences per utterance, each synthesized, trimmed and tapered alone, joined by 0.2-1.5 s pauses, with
  0.1-1.5 s of leading and trailing silence, up to ~25 s; speed {SPEED_WPM[0]}-{SPEED_WPM[1]} wpm (the demo: 130-177), pitch {PITCH[0]}-{PITCH[1]};
- peak {PEAK_DBFS[0]:g} to {PEAK_DBFS[1]:g} dBFS, a white noise floor at {NOISE_RMS_DBFS[0]:g} to {NOISE_RMS_DBFS[1]:g} dBFS RMS (the demo: -3 and -65); 45 % of the
  utterances stored as the demo stores chapters (MP3 64/96 kbit/s, AAC 48 kbit/s in MP4) and decoded with `tala.audio.convert`;
- targets: lower case, punctuation removed, okina variants unified to U+02BB, diacritics kept.

| language | voice | easy: utterances / hours | train | narrative | valid | word types | demo word types / tokens also in training |
|---|---|---:|---:|---:|---:|---:|---:|
{data_rows}

## Recipe

Every stage is one `tala.finetune.train_ctc` run (AdamW, linear warm-up, cosine decay, gradient clipping at 1.0, batches
of at most {r['batch_seconds']:g} s of padded audio, data order seeded per epoch):

1. **easy** (curriculum): from random weights, all parameters, both languages on the joint vocabulary `mul` (the
   union of both alphabets), on the short sentences of listed words; peak lr {r['easy_lr']:g} after {r['easy_warmup']} warm-up steps.
   From scratch on the full data the model stayed on CTC's all-blank plateau (loss ~2.9 per character) for
   1,200 steps; on these sentences it leaves it after ~300.
2. **base**: all parameters, both languages, the full data (long utterances, pauses, pseudo-words, codecs); peak lr
   {r['base_lr']:g} after {r['base_warmup']} warm-up steps, on from the easy stage. Samoan was then at 1-3 % CER on the demo,
   Portuguese at 5-13 %: it wrote the conjunction "e" (read [i]) as "i" or glued it to the next word, and
   misspelled the commonest words of scripture ("luz", "águas", "haja").
3. **scripture**: all parameters again, peak lr {r['scripture_lr']:g}, on the full data plus Portuguese *narrative*
   prose: clauses chained with "e" ("E disse ..., e ..."), the commonest words at their frequency in Bible prose,
   and a list of scripture's common content words (typed for this model; no demo sentence, as everywhere).
   Then a second pass (**scripture-2**) over the same data in another order, peak lr {r['scripture2_lr']:g}: the first
   pass sees each utterance about once, and its valid CER was still falling when its learning rate ran out.
4. **adapters**: per language, `--phase adapter` on the frozen base: the attention adapters and a language-sized
   `lm_head` whose rows start from the joint head's rows of the same letters; peak lr {r['adapter_lr']:g},
   {adapter_steps}; Portuguese on its train and narrative data.
5. **pack**: `model.safetensors` = base + the {info['default_adapter']} adapter; both adapters as `adapter.<lang>.safetensors`
   (the packer checks that both adapter runs left the base bit for bit unchanged).

| stage | phase | vocabulary | steps | peak lr | audio seen (h) | CPU minutes | valid CER |
|---|---|---|---:|---:|---:|---:|---:|
{stage_rows}

Training took {info['training_s'] / 60:.1f} min in all on 2 CPU cores (shared with other work), float32, seed {info['seed']}.

## Results: greedy CER on the demo chapters

Each chapter converted with `tala.audio.convert` (16 kHz mono), run through the model in 30 s windows, greedy CTC
decoding; characters assigned to verses by time (cuts in the middle of each pause, the spoken heading left out);
CER = character edits over all verses / reference characters (texts normalized as above).
"30 s + 2 s context": each 30 s window is run with 2 s of audio on each side and only its own frames kept (the
transcribe step's way); "fixed 30 s": consecutive 30 s windows without context.

| language | recording | wpm | seconds | 30 s + 2 s context | fixed 30 s |
|---|---|---:|---:|---:|---:|
{rows}
| all | | | | {total} |

## Reproduce

```
{info['command']}
```

Needs espeak-ng and ffmpeg. The texts, audio and training order are seeded; float32 CPU arithmetic of another
machine or thread count can differ in the last bits, so a rerun gives a model of the same quality rather than the
same bytes. Scratch data (~2 GB of clips, checkpoints) goes to `.cache/demo_model/`; a killed run resumes.
"""
