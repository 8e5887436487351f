"""Generate the bundled demo corpus: synthesized Bible chapters with exact verse times.

Each chapter is built verse by verse with espeak-ng: every verse is synthesized on its own, its
leading and trailing silence is trimmed (and the edges tapered by a few ms), and the verses are
joined with seeded pauses after a spoken heading that is *not* part of the verse text. Because we
place every verse ourselves, the verse start and end times are known to the sample of the
22.05 kHz master; they are written as ground truth beside the audio, which is stored the way real
users have it (stereo MP3, AAC in MP4, mono WAV), and beside the official text as a
publisher-style DOCX.

Layout written under ``--out`` (default ``resources/demo``)::

    <lang>/audio/<rec>.<mp3|mp4|wav>
    <lang>/text/<rec>.docx
    <lang>/truth/<rec>.json

Every written audio file is decoded back and checked against the master (lag within 1 ms,
length within a few ms); every DOCX is read back and its verse texts compared with the truth.
Any mismatch stops the run.

The synthesis helpers (``synthesize``, ``trim_silence``, ``assemble_chapter``, ``build_chapter``)
are importable, for synthesizing training speech for the demo's tiny ASR model.

    PYTHONPATH=scripts python -m tala.demo.corpus --out resources/demo
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import docx
import numpy as np
import soundfile as sf
import soxr
from docx.enum.style import WD_STYLE_TYPE
from docx.shared import Pt

from tala.fileio import atomic_path, write_json_atomic

MASTER_RATE_HZ = 22_050  # espeak-ng's native output rate; truth times are master sample indices
MP3_RATE_HZ = 44_100
MP4_RATE_HZ = 48_000
AAC_FRAME_SAMPLES = 1024  # ffmpeg 5.x keeps the encoder's padding of the last AAC frame on decode
VERIFY_RATE_HZ = 16_000  # the rate the workflow converts to; MP4 is checked there, as the brief says

PEAK_DBFS = -3.0
NOISE_RMS_DBFS = -65.0
TRIM_THRESHOLD_DBFS = -60.0
# espeak-ng stops its last phoneme within ~5 ms, a click that lossy codecs smear into the pause;
# a speaker's voice dies away, so each trimmed utterance gets a short raised-cosine taper.
FADE_IN_S = 0.002
FADE_OUT_S = 0.030

LEAD_IN_S = (0.5, 1.0)
AFTER_HEADING_PAUSE_S = (0.8, 1.6)
VERSE_PAUSE_S = (0.3, 1.5)
TRAILING_SILENCE_S = (1.0, 2.0)
SPEED_JITTER_WPM = 12  # espeak -s is words per minute; each chapter gets base +- jitter
RIGHT_CHANNEL_GAIN_DB = (-1.5, -0.5)  # stereo files: a slightly quieter right channel

MAX_LAG_S = 0.001
MAX_LENGTH_DIFF_S = 0.005
MIN_CHAPTER_S, MAX_CHAPTER_S = 45.0, 120.0
DEFAULT_SEED = 20_240_601
DOCX_DATE = dt.datetime(2024, 6, 1)  # naive: python-docx writes it as UTC
ZIP_DATE = (2024, 6, 1, 0, 0, 0)

OKINA = "\u02bb"
# espeak-ng reads a word-initial okina after another word as an opening quote and inserts a
# ~0.15 s pause; inside a word (fa'aigoa) it correctly speaks a glottal stop, so keep those.
_WORD_INITIAL_OKINA = re.compile(rf"(?<!\w){OKINA}")
_MARKER = re.compile(r"\{([^{}]+)\}")  # footnote reference in a verse source: "Deus{a} se movia"


class ToolMissingError(RuntimeError):
    """espeak-ng or ffmpeg is not on PATH."""


class VerificationError(RuntimeError):
    """A written file does not match what was generated."""


# --------------------------------------------------------------------------- texts


@dataclass(frozen=True)
class Section:
    """A section heading in the DOCX (style "Heading 2"); never spoken."""

    text: str


@dataclass(frozen=True)
class Para:
    """One DOCX paragraph holding the given verse numbers."""

    style: str
    verses: tuple[int, ...]


@dataclass(frozen=True)
class ChapterSource:
    rec: str
    book_title: str
    chapter_heading: str
    spoken_heading: str
    verses: tuple[str, ...]  # may contain footnote markers "{a}"
    layout: tuple[Section | Para, ...]
    footnotes: tuple[str, ...] = ()
    speed_offset_wpm: int = 0  # psalms are read more slowly than narrative


@dataclass(frozen=True)
class AudioFormat:
    """How a chapter is stored: ``ext`` is mp3 (44.1 kHz stereo), mp4 (AAC, 48 kHz stereo) or
    wav (22.05 kHz mono PCM16); ``bitrate`` is for the lossy ones."""

    ext: str
    bitrate: str | None = None


@dataclass(frozen=True)
class LanguageSource:
    lang: str
    voice: str
    base_speed_wpm: int
    formats: dict[str, AudioFormat]  # rec -> storage
    chapters: tuple[ChapterSource, ...]


def verse_text(source: str) -> str:
    """The verse as read aloud and as the truth states it: footnote markers removed."""
    return _MARKER.sub("", source)


def espeak_text(text: str) -> str:
    return _WORD_INITIAL_OKINA.sub("", text)


PORTUGUESE = LanguageSource(
    lang="portuguese",
    voice="pt",
    base_speed_wpm=165,
    formats={
        "GEN_001": AudioFormat("mp3", "96k"),
        "JHN_001": AudioFormat("mp3", "64k"),
        "RUT_001": AudioFormat("mp4", "48k"),
        "PSA_121": AudioFormat("wav"),
    },
    chapters=(
        ChapterSource(
            rec="GEN_001",
            book_title="Gênesis",
            chapter_heading="Capítulo 1",
            spoken_heading="Livro de Gênesis, capítulo um.",
            verses=(
                "No princípio criou Deus os céus e a terra.",
                "E a terra era sem forma e vazia; e havia trevas sobre a face do abismo; "
                "e o Espírito de Deus{a} se movia sobre a face das águas.",
                "E disse Deus: Haja luz; e houve luz.",
                "E viu Deus que era boa a luz; e fez Deus separação entre a luz e as trevas.",
                "E Deus chamou à luz Dia; e às trevas chamou Noite. " "E foi a tarde e a manhã, o dia primeiro.",
                "E disse Deus: Haja uma expansão no meio das águas, " "e haja separação entre águas e águas.",
                "E fez Deus a expansão, e fez separação entre as águas que estavam debaixo da "
                "expansão e as águas que estavam sobre a expansão; e assim foi.",
                "E chamou Deus à expansão Céus; e foi a tarde e a manhã, o dia segundo.",
                "E disse Deus: Ajuntem-se as águas debaixo dos céus num lugar; "
                "e apareça a porção seca; e assim foi.",
            ),
            layout=(
                Section("A criação"),
                Para("Normal", (1, 2)),
                Para("Normal", (3, 4, 5)),
                Para("Verse", (6, 7, 8)),
                Para("Verse", (9,)),
            ),
            footnotes=("a 1:2 Ou: o vento de Deus.",),
        ),
        ChapterSource(
            rec="JHN_001",
            book_title="Evangelho segundo João",
            chapter_heading="Capítulo 1",
            spoken_heading="Evangelho segundo São João, capítulo um.",
            verses=(
                "No princípio era o Verbo{a}, e o Verbo estava com Deus, e o Verbo era Deus.",
                "Ele estava no princípio com Deus.",
                "Todas as coisas foram feitas por ele, e sem ele nada do que foi feito se fez.",
                "Nele estava a vida, e a vida era a luz dos homens.",
                "E a luz resplandece nas trevas, e as trevas não a compreenderam.",
                "Houve um homem enviado de Deus, cujo nome era João.",
                "Este veio para testemunho, para que testificasse da luz, " "para que todos cressem por ele.",
                "Não era ele a luz, mas para que testificasse da luz.",
                "Ali estava a luz verdadeira, que alumia a todo o homem que vem ao mundo.",
                "Estava no mundo, e o mundo foi feito por ele, e o mundo não o conheceu.",
            ),
            layout=(
                Section("O Verbo eterno"),
                Para("Verse", (1, 2, 3)),
                Para("Verse", (4, 5)),
                Section("O testemunho de João"),
                Para("Normal", (6, 7, 8)),
                Para("Normal", (9, 10)),
            ),
            footnotes=("a 1:1 Gr. Logos, isto é, a Palavra.",),
        ),
        ChapterSource(
            rec="RUT_001",
            book_title="Rute",
            chapter_heading="Capítulo 1",
            spoken_heading="Livro de Rute, capítulo um.",
            verses=(
                "E sucedeu que, nos dias em que os juízes julgavam, houve uma fome na terra; "
                "pelo que um homem de Belém de Judá saiu a peregrinar nos campos de Moabe.",
                "E era o nome deste homem Elimeleque, e o nome de sua mulher Noemi, "
                "e os nomes de seus dois filhos Malom e Quiliom, efrateus{*}, de Belém de Judá.",
                "E morreu Elimeleque, marido de Noemi; e ficou ela com os seus dois filhos.",
                "Os quais tomaram para si mulheres moabitas; e era o nome de uma Orfa, "
                "e o nome da outra Rute; e ficaram ali quase dez anos.",
                "E morreram também ambos, Malom e Quiliom, ficando assim a mulher desamparada "
                "dos seus dois filhos e de seu marido.",
                "Então se levantou ela com as suas noras, e voltou dos campos de Moabe.",
                "Pelo que saiu do lugar onde estivera, e as suas duas noras com ela.",
                "E disse Noemi às suas duas noras: Ide, voltai cada uma à casa de sua mãe.",
                "O Senhor vos dê que acheis descanso cada uma em casa de seu marido.",
            ),
            layout=(
                Section("Elimeleque e sua família em Moabe"),
                Para("Normal", (1, 2)),
                Para("Normal", (3, 4, 5)),
                Section("Noemi volta para Belém"),
                Para("Normal", (6, 7)),
                Para("Verse", (8, 9)),
            ),
            footnotes=("* 1:2 Efrateus: naturais de Efrata, antigo nome de Belém.",),
        ),
        ChapterSource(
            rec="PSA_121",
            book_title="Salmos",
            chapter_heading="Salmo 121",
            spoken_heading="Salmo cento e vinte e um.",
            verses=(
                "Levantarei os meus olhos para os montes, de onde vem o meu socorro.",
                "O meu socorro vem do Senhor, que fez o céu e a terra.",
                "Não deixará vacilar o teu pé; aquele que te guarda não tosquenejará.",
                "Eis que não tosquenejará nem dormirá o guarda de Israel.",
                "O Senhor é quem te guarda; o Senhor é a tua sombra à tua mão direita.",
                "O sol não te molestará de dia, nem a lua de noite.",
                "O Senhor te guardará de todo o mal; ele guardará a tua alma.",
                "O Senhor guardará a tua entrada e a tua saída, desde agora e para sempre.",
            ),
            layout=(
                Section("Cântico dos degraus"),
                *(Para("Poetry", (n,)) for n in range(1, 9)),
            ),
            speed_offset_wpm=-25,
        ),
    ),
)

SAMOAN = LanguageSource(
    lang="samoan",
    voice="haw",
    base_speed_wpm=170,
    formats={
        "GEN_001": AudioFormat("mp4", "48k"),
        "JHN_001": AudioFormat("mp3", "96k"),
        "RUT_001": AudioFormat("mp3", "64k"),
        "PSA_121": AudioFormat("wav"),
    },
    chapters=(
        ChapterSource(
            rec="GEN_001",
            book_title="Kenese",
            chapter_heading="Mataupu 1",
            spoken_heading="O le Tusi o Kenese, mataupu muamua.",
            verses=(
                "I le amataga na faia ai e le Atua o le lagi ma le lalolagi.",
                "Sa lē foliga mai le lalolagi, sa gaogao foʻi; sa i luga o le moana le pōuliuli; "
                "sa fegaoioiaʻi foʻi le Agaga o le Atua{a} i luga o le vai.",
                "Ona fetalai mai lea o le Atua, Ia malamalama; ona malamalama ai lea.",
                "Ua silasila mai le Atua i le malamalama, ua lelei; "
                "ona vavaeeseina lea e le Atua o le malamalama ma le pōuliuli.",
                "Ua faʻaigoa e le Atua le malamalama o le ao, a o le pōuliuli ua faʻaigoa e ia "
                "o le pō. O le afiafi ma le taeao, o le aso muamua lea.",
                "Ona fetalai mai lea o le Atua, Ia i ai le vanimonimo i le vā o vai, " "ia vavaeeseina ai vai ma vai.",
                "Na faia e le Atua le vanimonimo, ma vavaeeseina ai vai o i lalo o le vanimonimo "
                "ma vai o i luga o le vanimonimo; ua faʻapea lava.",
                "Ua faʻaigoa e le Atua le vanimonimo o le lagi. " "O le afiafi ma le taeao, o le aso lua lea.",
                "Ona fetalai mai lea o le Atua, Ia potopoto vai o i lalo o le lagi i le mea e tasi, "
                "ia iloa atu foʻi le eleele mātūtū; ua faʻapea lava.",
            ),
            layout=(
                Section("O le foafoaga"),
                Para("Normal", (1, 2, 3)),
                Para("Normal", (4, 5)),
                Para("Verse", (6, 7, 8, 9)),
            ),
            footnotes=("a 1:2 Poʻo le: o le matagi a le Atua.",),
        ),
        ChapterSource(
            rec="JHN_001",
            book_title="Ioane",
            chapter_heading="Mataupu 1",
            spoken_heading="O le Evagelia a Ioane, mataupu muamua.",
            verses=(
                "O le amataga na i ai le Upu{a}, sa i le Atua foʻi le Upu, " "o le Atua lava foʻi le Upu.",
                "O ia lea sa i le Atua i le amataga.",
                "O mea uma lava na faia e ia; e leai lava se mea e tasi na faia e lē o ia na faia.",
                "Sa iā te ia le ola; o le ola foʻi o le malamalama lea o tagata.",
                "Ua pupula mai foʻi le malamalama i le pōuliuli, " "a ua lē maua lava e le pōuliuli.",
                "Sa i ai le tagata na ʻauina mai e le Atua, o Ioane lona igoa.",
                "Na sau o ia e molimau, ina ia molimau i le malamalama, " "ina ia faʻatuatua tagata uma ona o ia.",
                "E lē o ia o le malamalama, a ua sau o ia ina ia molimau i le malamalama.",
                "O le malamalama moni lea, e faʻamalamalamaina ai tagata uma, " "ua oʻo mai i le lalolagi.",
                "Sa i ai o ia i le lalolagi, na faia foʻi e ia le lalolagi, " "a ua lē iloa o ia e le lalolagi.",
            ),
            layout=(
                Section("O le Upu na avea ma tagata"),
                Para("Verse", (1, 2, 3, 4, 5)),
                Section("O le molimau a Ioane"),
                Para("Normal", (6, 7, 8)),
                Para("Normal", (9, 10)),
            ),
            footnotes=("a 1:1 Upu: i le gagana Eleni, o le Logos.",),
        ),
        ChapterSource(
            rec="RUT_001",
            book_title="Ruta",
            chapter_heading="Mataupu 1",
            spoken_heading="O le Tusi a Ruta, mataupu muamua.",
            verses=(
                "O aso na faʻamasino ai faʻamasino, sa oge le nuʻu; ona alu ai lea o le tagata "
                "mai Peteleema i Iuta e aumau i le nuʻu o Moapi.",
                "O le igoa o le tagata o Elimeleka, o le igoa foʻi o lana avā o Naomi, "
                "o igoa foʻi o ona ataliʻi e toʻalua o Malona ma Kilione{*}.",
                "Ua oti Elimeleka le tane a Naomi; ua totoe ai o ia ma ona ataliʻi e toʻalua.",
                "Ua la fai avā i fafine Moapi; o le igoa o le tasi o Orepa, "
                "o le igoa foʻi o le tasi o Ruta; ua latou nonofo ai pe tusa ma le sefulu tausaga.",
                "Ua oti foʻi i laʻua uma, o Malona ma Kilione; ua totoe ai le fafine, "
                "ua leai ana fanau, ua leai foʻi lana tane.",
                "Ona tulaʻi ai lea o ia ma ana nofotane, ina ia toe foʻi mai le nuʻu o Moapi.",
                "Ona alu ese ai lea o ia ai le mea sa i ai o ia, " "ma ana nofotane e toʻalua faʻatasi ma ia.",
                "Ona fai atu lea o Naomi i ana nofotane e toʻalua, Ina ō ia, "
                "ia taʻitasi ma toe foʻi i le fale o lona tinā.",
                "Ia foaʻi mai Ieova iā te oulua ia maua e taʻitasi le mapusaga " "i le fale o lana tane.",
            ),
            layout=(
                Section("O Elimeleka ma lona aiga"),
                Para("Normal", (1, 2, 3)),
                Para("Normal", (4, 5)),
                Section("Ua toe foʻi Naomi ma Ruta"),
                Para("Verse", (6, 7)),
                Para("Verse", (8, 9)),
            ),
            footnotes=("* 1:2 Malona ma Kilione: o ni Efarata mai Peteleema i Iuta.",),
        ),
        ChapterSource(
            rec="PSA_121",
            book_title="Salamo",
            chapter_heading="Salamo 121",
            spoken_heading="O le Salamo e selau ma le luasefulu ma le tasi.",
            verses=(
                "Ou te tepa aʻe i mauga; e sau mai fea loʻu fesoasoani?",
                "O loʻu fesoasoani e mai iā Ieova, o lē na faia le lagi ma le lalolagi.",
                "E lē tuʻuina atu e ia lou vae ina ia sē; " "e lē tulemoe lē na te leoleoina oe.",
                "Faʻauta, e lē tulemoe, e lē moe foʻi, lē na te leoleoina Isaraelu.",
                "O Ieova o lē na te leoleoina oe; o Ieova o lou paolo i lou itu taumatau.",
                "E lē tīgaina oe e le lā i le ao, e lē tīgaina foʻi e le masina i le pō.",
                "E leoleoina oe e Ieova ai mea leaga uma; na te leoleoina lou agaga.",
                "E leoleoina e Ieova lou ulufale atu ma lou ulufafo mai, " "talu ai nei e oʻo lava i le faʻavavau.",
            ),
            layout=(
                Section("O le pese o le alu aʻe"),
                *(Para("Poetry", (n,)) for n in range(1, 9)),
            ),
        ),
    ),
)

LANGUAGES: dict[str, LanguageSource] = {src.lang: src for src in (SAMOAN, PORTUGUESE)}


# --------------------------------------------------------------------------- synthesis


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissingError(
            f"{name} not found on PATH; the demo corpus generator needs espeak-ng and ffmpeg "
            f"(Debian/Ubuntu: apt-get install espeak-ng ffmpeg; macOS: brew install espeak-ng ffmpeg)"
        )
    return path


def synthesize(text: str, voice: str, speed: int, pitch: int | None = None) -> np.ndarray:
    """Speak ``text`` with espeak-ng; mono float32 at MASTER_RATE_HZ (silence edges untrimmed).

    ``speed`` is espeak's words per minute (-s, default 175), ``pitch`` its 0-99 pitch (-p).
    """
    espeak = require_tool("espeak-ng")
    with tempfile.TemporaryDirectory(prefix="tala-espeak-") as tmp:
        text_path, wav_path = Path(tmp) / "text.txt", Path(tmp) / "speech.wav"
        text_path.write_text(espeak_text(text), encoding="utf-8")
        cmd = [espeak, "-v", voice, "-s", str(speed), "-b", "1", "-f", str(text_path), "-w", str(wav_path)]
        if pitch is not None:
            cmd[1:1] = ["-p", str(pitch)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not wav_path.exists():
            raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {done.stderr.strip()}")
        samples, rate = sf.read(wav_path, dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    if rate != MASTER_RATE_HZ:
        samples = soxr.resample(samples, rate, MASTER_RATE_HZ).astype(np.float32)
    if samples.size == 0 or not np.any(samples):
        raise RuntimeError(f"espeak-ng produced no audio for {text!r} (voice {voice!r})")
    return samples


def trim_silence(samples: np.ndarray, threshold_dbfs: float = TRIM_THRESHOLD_DBFS) -> tuple[np.ndarray, int, int]:
    """Cut leading and trailing samples whose magnitude stays below ``threshold_dbfs``.

    Returns the kept samples and their ``[start, end)`` indices in the input: ``start`` is the
    first sample above the threshold, ``end`` one past the last.
    """
    threshold = 10.0 ** (threshold_dbfs / 20.0)
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if loud.size == 0:
        raise ValueError(f"no sample above {threshold_dbfs} dBFS: nothing to keep")
    start, end = int(loud[0]), int(loud[-1]) + 1
    return samples[start:end], start, end


def _rising_cosine(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 1) / (n + 1))).astype(np.float32)


def taper_edges(samples: np.ndarray, fade_in_s: float = FADE_IN_S, fade_out_s: float = FADE_OUT_S) -> np.ndarray:
    """Raised-cosine fade-in and fade-out at the edges; the length (and so the span) is kept."""
    out = samples.astype(np.float32, copy=True)
    n_in = min(int(round(fade_in_s * MASTER_RATE_HZ)), len(out) // 2)
    n_out = min(int(round(fade_out_s * MASTER_RATE_HZ)), len(out) // 2)
    if n_in:
        out[:n_in] *= _rising_cosine(n_in)
    if n_out:
        out[len(out) - n_out :] *= _rising_cosine(n_out)[::-1]
    return out


@dataclass(frozen=True)
class Span:
    """Sample indices ``[start, end)`` in the master."""

    start: int
    end: int


@dataclass(frozen=True)
class Chapter:
    master: np.ndarray  # mono float32 at MASTER_RATE_HZ, speech peak at PEAK_DBFS, noise floor
    heading: Span
    verses: tuple[Span, ...]


def _pause_samples(rng: np.random.Generator, bounds_s: tuple[float, float]) -> int:
    return int(round(rng.uniform(*bounds_s) * MASTER_RATE_HZ))


def assemble_chapter(heading: np.ndarray, verses: Sequence[np.ndarray], rng: np.random.Generator) -> Chapter:
    """Join trimmed heading and verse audio with seeded pauses, normalize, add the noise floor.

    Pauses between verses are uniform in VERSE_PAUSE_S; the noise floor is white noise at
    NOISE_RMS_DBFS so that silence is never digital zero, as in real recordings.
    """
    pieces: list[np.ndarray] = []
    cursor = 0

    def put_silence(n: int) -> None:
        nonlocal cursor
        pieces.append(np.zeros(n, np.float32))
        cursor += n

    def put_speech(speech: np.ndarray) -> Span:
        nonlocal cursor
        span = Span(cursor, cursor + len(speech))
        pieces.append(speech.astype(np.float32))
        cursor += len(speech)
        return span

    put_silence(_pause_samples(rng, LEAD_IN_S))
    heading_span = put_speech(heading)
    put_silence(_pause_samples(rng, AFTER_HEADING_PAUSE_S))
    verse_spans = []
    for i, verse in enumerate(verses):
        if i > 0:
            put_silence(_pause_samples(rng, VERSE_PAUSE_S))
        verse_spans.append(put_speech(verse))
    put_silence(_pause_samples(rng, TRAILING_SILENCE_S))

    joined = np.concatenate(pieces)
    master = joined * np.float32(10.0 ** (PEAK_DBFS / 20.0) / float(np.max(np.abs(joined))))
    noise = rng.standard_normal(len(master)) * 10.0 ** (NOISE_RMS_DBFS / 20.0)
    return Chapter((master + noise).astype(np.float32), heading_span, tuple(verse_spans))


def build_chapter(
    heading_text: str,
    verse_texts: Sequence[str],
    voice: str,
    speed: int,
    rng: np.random.Generator,
    pitch: int | None = None,
    synth: Callable[[str, str, int, int | None], np.ndarray] = synthesize,
) -> Chapter:
    """Synthesize heading and verses one by one, trim and taper each, and assemble the chapter."""

    def spoken(text: str) -> np.ndarray:
        return taper_edges(trim_silence(synth(text, voice, speed, pitch))[0])

    return assemble_chapter(spoken(heading_text), [spoken(t) for t in verse_texts], rng)


def chapter_rng(seed: int, lang: str, rec: str) -> np.random.Generator:
    """One independent, stable stream per chapter (crc32, since ``hash()`` is salted per run)."""
    return np.random.default_rng([seed, zlib.crc32(f"{lang}/{rec}".encode())])


# --------------------------------------------------------------------------- audio files


def _ffmpeg_encode(signal: np.ndarray, rate: int, codec_args: list[str], muxer: str, path: Path) -> None:
    ffmpeg = require_tool("ffmpeg")
    channels = 1 if signal.ndim == 1 else signal.shape[1]
    cmd = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "f32le", "-ar", str(rate), "-ac", str(channels), "-i", "pipe:0",
        "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact",
        *codec_args, "-f", muxer, str(path),
    ]  # fmt: skip
    done = subprocess.run(cmd, input=np.ascontiguousarray(signal, "<f4").tobytes(), capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}: {done.stderr.decode(errors='replace').strip()}")


def stereo_from_master(master: np.ndarray, rate: int, right_gain_db: float) -> np.ndarray:
    """Resample the master to ``rate`` and make two channels (right slightly quieter)."""
    mono = soxr.resample(master, MASTER_RATE_HZ, rate).astype(np.float32)
    return np.stack([mono, mono * np.float32(10.0 ** (right_gain_db / 20.0))], axis=1)


def write_audio(master: np.ndarray, fmt: AudioFormat, path: Path, rng: np.random.Generator) -> dict:
    """Write the chapter as a user would have it; returns the format facts for the truth JSON."""
    if fmt.ext == "wav":
        with atomic_path(path) as tmp:
            sf.write(tmp, master, MASTER_RATE_HZ, format="WAV", subtype="PCM_16")
        return {"container": "wav", "codec": "pcm_s16le", "sample_rate": MASTER_RATE_HZ, "channels": 1}
    right_gain_db = float(rng.uniform(*RIGHT_CHANNEL_GAIN_DB))
    if fmt.ext == "mp3":
        stereo = stereo_from_master(master, MP3_RATE_HZ, right_gain_db)
        with atomic_path(path) as tmp:
            _ffmpeg_encode(stereo, MP3_RATE_HZ, ["-c:a", "libmp3lame", "-b:a", fmt.bitrate], "mp3", tmp)
        return {"container": "mp3", "codec": "mp3", "sample_rate": MP3_RATE_HZ, "channels": 2,
                "bitrate": fmt.bitrate, "right_gain_db": round(right_gain_db, 3)}  # fmt: skip
    if fmt.ext == "mp4":
        stereo = stereo_from_master(master, MP4_RATE_HZ, right_gain_db)
        with atomic_path(path) as tmp:
            _ffmpeg_encode(stereo, MP4_RATE_HZ, ["-c:a", "aac", "-b:a", fmt.bitrate], "mp4", tmp)
        return {"container": "mp4", "codec": "aac", "sample_rate": MP4_RATE_HZ, "channels": 2,
                "bitrate": fmt.bitrate, "right_gain_db": round(right_gain_db, 3)}  # fmt: skip
    raise ValueError(f"unknown audio format {fmt!r}")


def tool_versions() -> dict[str, str]:
    """espeak-ng decides the timings, ffmpeg the encoded bytes: both are recorded in the truth."""
    versions = {}
    for tool, pattern in (("espeak-ng", r"text-to-speech:\s*(\S+)"), ("ffmpeg", r"ffmpeg version\s+(\S+)")):
        done = subprocess.run([require_tool(tool), "--version" if tool == "espeak-ng" else "-version"],
                              capture_output=True, text=True)  # fmt: skip
        found = re.search(pattern, done.stdout)
        versions[tool] = found.group(1) if found else "unknown"
    return versions


def probe_audio(path: Path) -> dict:
    """Codec, rate, channels and duration of the first audio stream, as ffprobe reports them."""
    ffprobe = require_tool("ffprobe")
    done = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "a:0", "-of", "json",
         "-show_entries", "stream=codec_name,sample_rate,channels,duration", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"ffprobe failed on {path}: {done.stderr.strip()}")
    stream = json.loads(done.stdout)["streams"][0]
    return {
        "codec": stream["codec_name"],
        "sample_rate": int(stream["sample_rate"]),
        "channels": int(stream["channels"]),
        "duration": float(stream["duration"]),
    }


def decode_mono(path: Path, rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode to mono float32: soundfile for WAV/MP3, ffmpeg for anything else (MP4/AAC)."""
    if path.suffix.lower() in (".wav", ".mp3") and rate is None:
        samples, file_rate = sf.read(path, dtype="float32", always_2d=True)
        return samples.mean(axis=1), file_rate
    ffmpeg = require_tool("ffmpeg")
    rate = rate or probe_audio(path)["sample_rate"]
    done = subprocess.run(
        [ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(rate), "-"],
        capture_output=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg could not decode {path}: {done.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(done.stdout, dtype="<f4").copy(), rate


def measure_lag(signal: np.ndarray, reference: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Lag (samples; positive: ``signal`` is late) maximizing the cross-correlation within
    ``max_lag``, and the normalized correlation at that lag."""
    n = min(len(signal), len(reference))
    a = signal[:n].astype(np.float64)
    b = reference[:n].astype(np.float64)
    size = 1 << (2 * n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    window = np.concatenate([corr[size - max_lag :], corr[: max_lag + 1]])
    lag = int(np.argmax(window)) - max_lag
    return lag, float(window[lag + max_lag] / (np.linalg.norm(a) * np.linalg.norm(b)))


def verify_audio(path: Path, master: np.ndarray, fmt: str) -> dict:
    """Decode ``path`` back and compare with the master; raise VerificationError on mismatch."""
    if fmt == "mp4":
        facts = probe_audio(path)
        if (facts["codec"], facts["sample_rate"], facts["channels"]) != ("aac", MP4_RATE_HZ, 2):
            raise VerificationError(f"{path}: unexpected stream {facts}")
        master_s = len(master) / MASTER_RATE_HZ
        if abs(facts["duration"] - master_s) > MAX_LENGTH_DIFF_S:
            raise VerificationError(f"{path}: container duration {facts['duration']} s, master {master_s} s")
        decoded, rate = decode_mono(path, VERIFY_RATE_HZ)
        # ffmpeg 5.x honours the MP4 edit list at the start but keeps the last frame's padding.
        tail_allowance = int(np.ceil(AAC_FRAME_SAMPLES * rate / MP4_RATE_HZ))
    else:
        info = sf.info(path)
        expected = (MP3_RATE_HZ, 2) if fmt == "mp3" else (MASTER_RATE_HZ, 1)
        if (info.samplerate, info.channels) != expected:
            raise VerificationError(f"{path}: {info.samplerate} Hz x {info.channels} ch, expected {expected}")
        decoded, rate = decode_mono(path)
        tail_allowance = 0
    reference = master if rate == MASTER_RATE_HZ else soxr.resample(master, MASTER_RATE_HZ, rate)
    lag, corr = measure_lag(decoded, reference, max_lag=int(0.25 * rate))
    length_diff = len(decoded) - len(reference)
    tolerance = int(MAX_LENGTH_DIFF_S * rate)
    result = {
        "file": str(path), "decoded_rate": rate, "lag_samples": lag, "lag_ms": 1000.0 * lag / rate,
        "correlation": corr, "length_diff_ms": 1000.0 * length_diff / rate,
    }  # fmt: skip
    if abs(lag) > MAX_LAG_S * rate:
        raise VerificationError(f"{path}: decoded audio is offset by {result['lag_ms']:.3f} ms")
    if corr < 0.95:
        raise VerificationError(f"{path}: decoded audio correlates only {corr:.3f} with the master")
    if not -tolerance <= length_diff <= tolerance + tail_allowance:
        raise VerificationError(f"{path}: decoded length differs by {result['length_diff_ms']:.2f} ms")
    return result


# --------------------------------------------------------------------------- texts as DOCX


def _docx_bytes_reproducible(document) -> bytes:
    """Save ``document`` with fixed zip entry dates so that regenerating gives identical bytes."""
    raw = io.BytesIO()
    document.save(raw)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw.getvalue())) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            entry = zipfile.ZipInfo(item.filename, date_time=ZIP_DATE)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            dst.writestr(entry, src.read(item.filename))
    return out.getvalue()


def chapter_docx(chapter: ChapterSource) -> bytes:
    """The publisher-style DOCX: title, chapter heading, unspoken section headings, verse
    paragraphs with superscript verse numbers (and footnote markers), footnotes at the end."""
    document = docx.Document()
    styles = document.styles
    for name, italic, size_pt, indent_pt in (
        ("Verse", False, 11, 0), ("Poetry", True, 11, 18), ("Footnote Text", False, 9, 0),
    ):  # fmt: skip
        style = styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH)
        style.base_style = styles["Normal"]
        style.font.italic = italic
        style.font.size = Pt(size_pt)
        style.paragraph_format.left_indent = Pt(indent_pt)

    document.add_paragraph(chapter.book_title, style="Title")
    document.add_paragraph(chapter.chapter_heading, style="Heading 1")
    for block in chapter.layout:
        if isinstance(block, Section):
            document.add_paragraph(block.text, style="Heading 2")
            continue
        paragraph = document.add_paragraph(style=block.style)
        for i, number in enumerate(block.verses):
            if i > 0:
                paragraph.add_run(" ")
            paragraph.add_run(str(number)).font.superscript = True
            for j, piece in enumerate(_MARKER.split(chapter.verses[number - 1])):
                if j % 2 == 1:
                    paragraph.add_run(piece).font.superscript = True
                elif piece:
                    paragraph.add_run(piece)
    for note in chapter.footnotes:
        document.add_paragraph(note, style="Footnote Text")

    props = document.core_properties
    props.author = props.last_modified_by = "tala demo corpus"
    props.title = f"{chapter.book_title} {chapter.chapter_heading}"
    props.created = props.modified = DOCX_DATE
    props.revision = 1
    return _docx_bytes_reproducible(document)


def read_docx_verses(path: Path) -> dict[int, str]:
    """Verse number -> text, read back as a text step would: superscript digits start a verse,
    other superscript runs are footnote markers, headings and footnotes are skipped."""
    verses: dict[int, str] = {}
    for paragraph in docx.Document(str(path)).paragraphs:
        if paragraph.style.name not in ("Normal", "Verse", "Poetry"):
            continue
        current = None
        for run in paragraph.runs:
            if run.font.superscript and run.text.strip().isdigit():
                current = int(run.text)
                verses[current] = ""
            elif run.font.superscript:
                continue
            elif current is not None:
                verses[current] += run.text
    return {number: text.strip() for number, text in verses.items()}


# --------------------------------------------------------------------------- driver


def seconds(sample_index: int) -> float:
    return round(sample_index / MASTER_RATE_HZ, 6)


def truth_record(
    lang: LanguageSource,
    source: ChapterSource,
    chapter: Chapter,
    speed: int,
    audio: dict,
    seed: int,
    tools: dict[str, str],
) -> dict:
    """The ground truth: times are master sample indices / MASTER_RATE_HZ, ``end`` exclusive."""
    fmt = lang.formats[source.rec]
    return {
        "recording": source.rec,
        "language": lang.lang,
        "audio": f"audio/{source.rec}.{fmt.ext}",
        "text": f"text/{source.rec}.docx",
        "audio_format": audio,
        "duration": seconds(len(chapter.master)),
        "sample_rate_master": MASTER_RATE_HZ,
        "voice": lang.voice,
        "speed": speed,
        "seed": seed,
        "generator": "tala.demo.corpus",
        "tool_versions": tools,
        "heading": {
            "start": seconds(chapter.heading.start),
            "end": seconds(chapter.heading.end),
            "text": source.spoken_heading,
        },
        "verses": [
            {"number": number, "text": verse_text(text), "start": seconds(span.start), "end": seconds(span.end)}
            for number, (text, span) in enumerate(zip(source.verses, chapter.verses), start=1)
        ],
    }


def generate_language(lang: LanguageSource, out: Path, seed: int, verify: bool = True) -> list[dict]:
    tools = tool_versions()
    reports = []
    for source in lang.chapters:
        rng = chapter_rng(seed, lang.lang, source.rec)
        jitter_wpm = int(rng.integers(-SPEED_JITTER_WPM, SPEED_JITTER_WPM + 1))
        speed = lang.base_speed_wpm + source.speed_offset_wpm + jitter_wpm
        chapter = build_chapter(source.spoken_heading, [verse_text(v) for v in source.verses], lang.voice, speed, rng)
        duration_s = len(chapter.master) / MASTER_RATE_HZ
        if not MIN_CHAPTER_S <= duration_s <= MAX_CHAPTER_S:
            raise VerificationError(f"{lang.lang}/{source.rec}: {duration_s:.1f} s is outside 45-120 s")

        fmt = lang.formats[source.rec]
        audio_path = out / lang.lang / "audio" / f"{source.rec}.{fmt.ext}"
        audio = write_audio(chapter.master, fmt, audio_path, rng)
        docx_path = out / lang.lang / "text" / f"{source.rec}.docx"
        with atomic_path(docx_path) as tmp:
            tmp.write_bytes(chapter_docx(source))
        truth = truth_record(lang, source, chapter, speed, audio, seed, tools)
        write_json_atomic(out / lang.lang / "truth" / f"{source.rec}.json", truth)

        report = {"lang": lang.lang, "rec": source.rec, "duration_s": round(duration_s, 3), "speed": speed}
        if verify:
            report.update(verify_audio(audio_path, chapter.master, fmt.ext))
            expected = {v["number"]: v["text"] for v in truth["verses"]}
            if read_docx_verses(docx_path) != expected:
                raise VerificationError(f"{docx_path}: verse texts differ from the truth")
        reports.append(report)
        line = f"{lang.lang}/{source.rec}.{fmt.ext}: {duration_s:6.2f} s, speed {speed}, {len(source.verses)} verses"
        if verify:
            line += (
                f", decoded lag {report['lag_ms']:+.3f} ms, length {report['length_diff_ms']:+.2f} ms,"
                f" correlation {report['correlation']:.4f}"
            )
        print(line, flush=True)
    return reports


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tala.demo.corpus",
        description="Synthesize the bundled demo corpus (audio, DOCX texts, ground-truth verse times) "
        "with espeak-ng and ffmpeg, and verify every written file.",
    )
    parser.add_argument("--out", type=Path, default=Path("resources/demo"), help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--lang", action="append", choices=sorted(LANGUAGES), help="only this language (repeatable; default: all)"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip decoding the written files back")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        for tool in ("espeak-ng", "ffmpeg", "ffprobe"):
            require_tool(tool)
        for name in args.lang or sorted(LANGUAGES):
            generate_language(LANGUAGES[name], args.out, args.seed, verify=not args.no_verify)
    except (ToolMissingError, VerificationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
