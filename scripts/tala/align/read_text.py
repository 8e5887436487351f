r"""Read the verses of an official chapter DOCX and normalize them for the CTC aligner.

    python -m tala.align.read_text DOCX OUT_JSON --model M [--adapter smo] [--models-dir DIR]
        [--skip-style NAME ...] [--skip-pattern REGEX ...] [--char-map JSON] [--okina CHAR]
        [--macrons keep|strip] [--keep-case]

Paragraphs in an unspoken style (titles, headings, footnotes, captions, headers, footers, tables
of contents, and the heading styles of USFM/Paratext exports: "s1", "mt1", "r", "Section Head")
or whose whole text matches a ``--skip-pattern`` are left out, and listed in the output's
"skipped" with the reason, as are the other pieces left out below. Verses may span paragraphs
(poetry lines, table cells), and a paragraph may hold several verses. A verse starts at its
verse number, in whichever of these layouts publishers and Bible software produce:

- marked numbers: digits (or a range "1-2", or "1:12", chapter dropped) in a superscript run or
  a character style named like "Verse Number", "VerseNumber", "v" or "vn"; bold or coloured runs
  that hold only a number, inline in a running paragraph (where nothing else marks the numbers,
  those that run in order: a bold "7" for emphasis stays text);
  USFM ``\v 12`` markers in the text, as Paratext exports it (``\c`` dropped, ``\s1`` headings,
  ``\f`` footnotes and ``\x`` cross references left out, ``\p``/``\q1`` line breaks). Where
  numbers are marked, a paragraph may also start with the next verse number in plain digits.
- plain numbers, where nothing is marked: one verse per paragraph ("12 In", "12. In", "12) In",
  "1:12 In") or numbers inline in running paragraphs ("1 In the beginning ... 2 And the
  earth"). An inline number is a verse number only as the next one (last + 1, or a range from
  there), after the start or a space and before a space and a letter, so "40 days", "the year
  1999" or "Psalm 23 says" inside a verse stay text; the verse numbers are the longest chain of
  such numbers running 1, 2, 3 (see ``choose_verse_numbers``).

Chapter numbers are left out: a drop cap (a Word frame, or a number much larger than the text
at a paragraph's start), a chapter-number character style, a lone number or a lone "Chapter 1",
"Genesis 1", "Salmo 121" paragraph before the first verse; verse 1 may then go unnumbered.
Other superscript runs (letters, symbols) are footnote markers and are removed, as are runs in a
footnote-reference style and body paragraphs holding a footnote ("a 1:2 Or: ..."). Warnings, one
line each on stderr and in the output's "warnings", name gaps in the numbers and verses that look
wrongly cut (``sanity_warnings``: far fewer verses than sentences,
a verse of minutes of speech, numbers left in a verse that look like verse numbers).
``read_verses`` does all of this without a model, for the workflow's inspection step.

Each verse's text is then normalized to what the aligner consumes, driven by the model's
vocabulary (read from the model's vocab.json, :func:`tala.hub.model_vocabulary`: the text step does not
wait for the transcription): lower case, punctuation as word
breaks, okina variants unified, letters outside the vocabulary mapped to their base letter where
that is in the vocabulary. Whatever still cannot be spelled with the vocabulary (digits, foreign
letters) is left out of the normalized text, listed under "characters.unmapped" and named in one
warning on stderr, never dropped silently.
"""

from __future__ import annotations

import argparse
import bisect
import fnmatch
import json
import re
import sys
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import docx
from docx.enum.dml import MSO_COLOR_TYPE, MSO_THEME_COLOR
from docx.opc.exceptions import OpcError
from docx.oxml.ns import qn
from docx.shared import RGBColor
from docx.table import Table
from docx.text.hyperlink import Hyperlink
from docx.text.paragraph import Paragraph as DocxParagraph
from lxml import etree

import tala
from tala.ctc_text import letters_of
from tala.errors import InputError, run_cli
from tala.hub import model_vocabulary
from tala.fileio import write_json_atomic

# Case-insensitive globs on paragraph style names (a style also matches through its base styles).
SKIP_STYLES = ("Title", "Subtitle", "Heading*", "Footnote Text", "Endnote Text", "Caption",
               "Header", "Footer", "TOC*")
# Apostrophe-like characters that write the okina (glottal stop) in Samoan, Hawaiian, Tongan...
OKINA_FORMS = "ʻʼ'‘’`"
# When the vocabulary holds several of them, the letter-like ones are the model's okina.
OKINA_PREFERENCE = "ʻʼ’'‘`"
MACRON = "\u0304"
WORD_BREAKS_INVISIBLE = {"\u200b"}  # zero-width space: a word break that shows no space
WORD_DELIMITER = "|"
NUMBER_LABEL = re.compile(r"(\d+)(?:\s*[-–—]\s*(\d+))?")
# A paragraph that starts with a verse number: "12 In", "12. In", "12) In", "1:12 In".
PLAIN_NUMBER_START = re.compile(r"\s*(?:\d+:)?(\d+(?:[-–—]\d+)?)[.)]?\s+(?=\S)")
# Digits in a superscript or verse-styled run; "1:12" is verse 12 of chapter 1.
MARKED_NUMBER = re.compile(r"(?:\d+\s*:\s*)?(?P<label>\d+(?:\s*[-–—]\s*\d+)?)")
# A bold or coloured run that holds only a verse number: "12", "12.", "4-5", "1:12".
EMPHASIZED_NUMBER = re.compile(r"(?:\d{1,3}\s*:\s*)?(?P<label>\d{1,3}(?:\s*[-–—]\s*\d{1,3})?)[.)]?")
MIN_BOLD_NUMBERS = 2  # a single bold number is emphasis or a chapter number
BOLD_NUMBER_SCORE = 5  # as well placed as a plain number can be: formatting marks it
EMPHASIZED_NUMBER_CHARS = re.compile(r"[\d\s:.)\-–—]*")
VERSE_STYLE_MARKERS = {"v", "vn", "vp", "vs", "vnum"}  # USFM/Paratext export character styles
NOTE_STYLE_MARKERS = {"f", "fe", "x", "fm"}
DEFAULT_FONT_SIZE_PT = 11.0
DROP_CAP_SIZE_RATIO = 1.5  # a number this much larger than the text is a drop-cap chapter number
# A lone chapter heading: "Chapter 1", "CHAPTER 1", "Genesis 1", "Salmo 121", "1 Samuel 3".
CHAPTER_HEADING = re.compile(
    r"(?:[1-3]\s*)?(?P<word>[^\W\d_][^\W\d_'’ʻ.-]*)(?:\s+[^\W\d_][^\W\d_'’ʻ.-]*){0,3}"
    r"\s+\d{1,3}[.:]?")
# A footnote's text in the body: a note marker, then the reference it explains ("a 1:2 Or: ...").
FOOTNOTE_TEXT = re.compile(r"(?:(?:[a-z]|[*†‡§¶#]+)[.)]?\s*|\d{1,3}[.)]?\s+)\d{1,3}[:.]\d{1,3}\b")
# Paragraph style names of Bible exports (Paratext, Pathway...) that are headings, compared squashed.
EXPORT_HEADING_STYLES = {"sectionhead": "section heading", "majorsection": "section heading",
                         "parallelpassage": "section heading", "chapterhead": "chapter heading",
                         "chapterlabel": "chapter label", "titlemain": "title",
                         "titlesecondary": "title", "psalmtitle": "psalm title"}

# USFM, as Paratext exports it: markers start with a backslash.
USFM_HINT = re.compile(
    r"(?:^|(?<=\s))\\(?:id|c|v|p|m|q\d?|s\d?|mt\d?|ms\d?|h|toc\d|d|b|nb|pi\d?|li\d?|rem|f|x)(?![a-z])")
USFM_MARKER = re.compile(r"\\\+?(?P<marker>[a-z]+\d*)(?P<closing>\*)?(?(closing)| ?)")
USFM_NUMBER = re.compile(r"\s*(?P<label>\d+(?:[-–—]\d+)?)[a-z]?(?:[-–—]\d+[a-z]?)?\s?")
USFM_ATTRIBUTES = re.compile(r"\|[^\\|]*(?=\\\+?[a-z]+\d*\*)")  # \w grace|lemma="charis"\w*
USFM_NOTES = {"f": "footnote", "fe": "endnote", "ef": "footnote", "x": "cross reference",
              "ex": "cross reference", "rq": "cross reference", "fig": "figure",
              "va": "", "vp": "", "ca": ""}  # "": alternative numbers, removed quietly
USFM_UNSPOKEN = {
    **dict.fromkeys(("id", "ide", "h", "toc", "toca", "rem", "sts", "usfm"), "identification"),
    **dict.fromkeys(("mt", "mte", "imt", "imte"), "title"),
    **dict.fromkeys(("ms", "mr", "s", "sr", "r", "sp", "sd"), "section heading"),
    "d": "psalm title", "cl": "chapter label", "cd": "chapter label", "qa": "acrostic heading",
    **dict.fromkeys(("is", "ip", "ipi", "im", "imi", "ipq", "imq", "ipr", "iq", "ib", "ili", "io",
                     "iot", "iex", "ie"), "introduction"),
}
USFM_LINE_BREAKS = {"p", "m", "po", "pr", "cls", "pmo", "pm", "pmc", "pmr", "pi", "mi", "nb", "pc",
                    "ph", "b", "q", "qr", "qc", "qm", "qd", "li", "lh", "lf", "lim", "tr", "pb"}

# A plain number in running text that may start a verse (see ``plain_number_candidates``).
PLAIN_NUMBER = re.compile(
    r"(?<!\w)(?:(?P<chapter>\d{1,3}):)?(?P<first>\d{1,3})(?:[-–—](?P<last>\d{1,3}))?(?P<suffix>[.)]?)"
    r"(?P<space>[^\S\n]*\n?[^\S\n]*)(?P<next>[^\W\d_]|[“\"‘'«¿¡(\[])")
CLOSING_PUNCTUATION = set(".;:!?,…”’\"'»)]—–-")
# Words after which a number is a reference, not a verse number ("chapter 3", "Salmo 23").
REFERENCE_WORDS = {"chapter", "chapters", "ch", "verse", "verses", "v", "vv", "psalm", "psalms",
                   "capítulo", "capítulos", "cap", "versículo", "versículos", "salmo", "salmos",
                   "mataupu", "fuaiupu", "salamo", "year", "years", "ano", "anos"}
MAX_RANGE_VERSES = 20
MAX_WORD_CHARS = 40  # how far back to look for the word before a number
VERSE_WEIGHT = 10  # the verse search prefers more verses over better placed ones ...
SKIP_PENALTY = 8  # ... but a verse number that skips verses must be worth it

# Sanity checks on the verses found.
SENTENCE_END = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s|$)")
MIN_SENTENCES_TO_COUNT = 12
MAX_SENTENCES_PER_VERSE = 6
MAX_VERSE_WORDS = 150  # about a minute read aloud: no verse is that long
WORDS_PER_MINUTE = 150
MAX_HIDDEN_STEP = 3  # numbers this close after a verse's may be verse numbers it swallowed


class TextError(ValueError):
    """The document's verses cannot be read; main reports it against the DOCX."""


# What a run of a paragraph is, from its formatting and character style.
TEXT = "text"
RAISED = "raised"  # superscript or a verse-number character style: verse numbers and note markers
EMPHASIZED = "emphasized"  # bold or coloured: a verse number when it holds only one
NOTE = "note"  # a footnote or endnote reference (or a note) in its own character style
CHAPTER_NUMBER = "chapter number"  # a chapter-number character style or a drop-cap sized number


@dataclass(frozen=True)
class Run:
    """A piece of a paragraph's text and what its formatting makes it (TEXT, RAISED, ...)."""

    text: str
    kind: str = TEXT


@dataclass(frozen=True)
class Paragraph:
    index: int
    style: str
    runs: tuple[Run, ...]
    base_styles: tuple[str, ...] = ()  # the styles ``style`` is based on, nearest first
    drop_cap: bool = False  # a frame Word draws as a drop cap next to the next paragraph

    @property
    def text(self) -> str:
        return "".join(run.text for run in self.runs)


@dataclass(frozen=True)
class DocxVerse:
    """A verse as the DOCX writes it (read_text), before normalization."""

    number: int  # the first number of a range
    label: str  # as written: "1", "1-2"
    text: str  # whitespace collapsed, footnote markers removed
    last: int  # the last number of a range


# What a stretch of a readable paragraph is, once its runs and markers are read.
VERSE = "verse"  # a marked verse number (superscript, verse style, bold, USFM \v); text: its label
BOLD_NUMBER = "bold number"  # an emphasized number: a verse number if the document has several
HEADING = "heading"  # a chapter heading ("Chapter 1"): left out before the first verse, else text
CHAPTER = "chapter"  # a chapter number: left out
LEFT_OUT = "left out"  # a footnote, a USFM heading or title: left out
PLAIN = "plain"  # a verse number in plain digits starting a paragraph of a marked document


@dataclass(frozen=True)
class Piece:
    kind: str  # TEXT, VERSE, BOLD_NUMBER, HEADING, CHAPTER or LEFT_OUT
    text: str
    reason: str = ""  # why a HEADING, CHAPTER or LEFT_OUT piece is not read


@dataclass(frozen=True)
class NumberCandidate:
    """A plain number in the running text that may start a verse (see ``plain_number_candidates``)."""

    start: int  # where the number starts in the text
    end: int  # where the verse's text starts: after the number and its "." or ")"
    label: str  # the verse number or range as written, without a "chapter:" prefix
    first: int
    last: int
    chapter: int | None  # the chapter of a "chapter:verse" reference
    score: int  # how much it looks like a verse number; 0: not one ("Psalm 23 says")
    at_paragraph_start: bool


@dataclass(frozen=True)
class NormalizeOptions:
    char_map: dict[str, str] = field(default_factory=dict)
    okina: str | None = None  # the vocabulary's okina; None: apostrophes are punctuation
    strip_macrons: bool = False
    case: str = "lower"  # lower, upper or keep


@dataclass
class CharacterReport:
    """What normalization did to characters outside the vocabulary."""

    mapped: Counter = field(default_factory=Counter)  # (from, to) -> count
    unmapped: Counter = field(default_factory=Counter)  # character -> count


# --------------------------------------------------------------------------- reading the DOCX


def extract_paragraphs(path: str | Path) -> list[Paragraph]:
    """The document's body paragraphs in reading order (table cells included), with their runs.

    Raises InputError when the file is missing or not a Word document."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        document = docx.Document(str(path))
    except (OpcError, zipfile.BadZipFile, KeyError, ValueError, etree.XMLSyntaxError) as err:
        raise InputError(path, f"not a readable DOCX (Word) file ({err})") from None
    default_size_pt = _default_font_size_pt(document)
    return [_paragraph(index, paragraph, default_size_pt)
            for index, paragraph in enumerate(_iter_paragraphs(document.iter_inner_content()))]


def _iter_paragraphs(content: Iterable) -> Iterator[DocxParagraph]:
    for block in content:
        if isinstance(block, Table):
            for row in block.rows:
                for cell in row.cells:
                    yield from _iter_paragraphs(cell.iter_inner_content())
        else:
            yield block


def _default_font_size_pt(document) -> float:
    size = document.styles.element.find(f"{qn('w:docDefaults')}/{qn('w:rPrDefault')}/"
                                        f"{qn('w:rPr')}/{qn('w:sz')}")
    try:
        return int(size.get(qn("w:val"))) / 2  # half-points
    except (AttributeError, TypeError, ValueError):
        return DEFAULT_FONT_SIZE_PT


def _paragraph(index: int, paragraph: DocxParagraph, default_size_pt: float) -> Paragraph:
    docx_runs = []
    for item in paragraph.iter_inner_content():
        docx_runs.extend(item.runs if isinstance(item, Hyperlink) else (item,))
    style = paragraph.style
    base_styles = []
    base = style.base_style if style is not None else None
    while base is not None and len(base_styles) < 20:
        base_styles.append(base.name)
        base = base.base_style
    text_size_pt = _style_font_size_pt(style) or default_size_pt
    runs = []
    for run in docx_runs:
        kind = _run_kind(run)
        if not any(r.text.strip() for r in runs) and run.text.strip().isdigit() and kind != NOTE:
            size_pt = _run_font_size_pt(run)
            if size_pt is not None and size_pt >= DROP_CAP_SIZE_RATIO * text_size_pt:
                kind = CHAPTER_NUMBER
        runs.append(Run(run.text, kind))
    frame = paragraph._p.pPr.find(qn("w:framePr")) if paragraph._p.pPr is not None else None
    drop_cap = frame is not None and frame.get(qn("w:dropCap")) in ("drop", "margin")
    return Paragraph(index, style.name if style is not None else "", tuple(runs), tuple(base_styles),
                     drop_cap)


def _style_font_size_pt(style) -> float | None:
    for _ in range(20):
        if style is None:
            return None
        if style.font.size is not None:
            return style.font.size.pt
        style = style.base_style
    return None


def _run_font_size_pt(run) -> float | None:
    if run.font.size is not None:
        return run.font.size.pt
    return _style_font_size_pt(run.style)


def _squashed(name: str | None) -> str:
    """A style name compared loosely: "Verse Number", "VerseNumber" and "verse_number" alike."""
    return re.sub(r"\W|_", "", (name or "").casefold())


def is_verse_number_style(name: str | None) -> bool:
    """Character styles of verse numbers: "Verse Number", "VerseNumber", "Versículo", and the
    USFM/Paratext export styles "v", "vn", "vp"."""
    squashed = _squashed(name)
    return "verse" in squashed or squashed.startswith("vers") or squashed in VERSE_STYLE_MARKERS


def is_note_style(name: str | None) -> bool:
    """Character styles of footnote and endnote references (and of notes, as USFM "f", "x")."""
    squashed = _squashed(name)
    return any(part in squashed for part in ("footnote", "endnote", "noteref", "notecaller")) or (
        squashed in NOTE_STYLE_MARKERS)


def is_chapter_number_style(name: str | None) -> bool:
    """Character styles of chapter numbers: "Chapter Number", "c", "Drop Cap"."""
    squashed = _squashed(name)
    return squashed in ("c", "cn", "chapter", "chapnum") or squashed.startswith("chapternum") or (
        "dropcap" in squashed)


def _run_kind(run) -> str:
    style = run.style
    style_name = style.name if style is not None else None
    if is_note_style(style_name) or run._r.find(qn("w:footnoteReference")) is not None or (
            run._r.find(qn("w:endnoteReference")) is not None):
        return NOTE
    if is_chapter_number_style(style_name):
        return CHAPTER_NUMBER
    # python-docx reads a character style's own formatting only, not inherited through base styles
    if run.font.superscript or is_verse_number_style(style_name) or (
            style is not None and style.font.superscript):
        return RAISED
    if run.font.bold or (style is not None and style.font.bold) or _is_coloured(run.font) or (
            style is not None and _is_coloured(style.font)):
        return EMPHASIZED
    return TEXT


def _is_coloured(font) -> bool:
    color = font.color
    if color.type is None or color.type == MSO_COLOR_TYPE.AUTO:
        return False
    if color.type == MSO_COLOR_TYPE.THEME:
        return color.theme_color not in (MSO_THEME_COLOR.TEXT_1, MSO_THEME_COLOR.DARK_1)
    return color.rgb is not None and color.rgb != RGBColor(0, 0, 0)


# --------------------------------------------------------------------------- pieces of a paragraph


def paragraph_pieces(paragraph: Paragraph) -> list[Piece]:
    """What a readable paragraph holds, in order: its text, marked verse numbers, chapter numbers,
    and what is left out (footnotes, USFM headings). Plain numbers in the text are left to
    ``plain_number_candidates``: whether they are verse numbers depends on the whole document."""
    text = paragraph.text.strip()
    if paragraph.drop_cap and text.isdigit():
        return [Piece(CHAPTER, text, "chapter number (drop cap)")]
    if FOOTNOTE_TEXT.match(text):
        return [Piece(LEFT_OUT, text, "footnote text (a note marker and a reference)")]
    if USFM_HINT.search(text):
        return usfm_pieces(paragraph.text)
    if not any(run.kind == RAISED for run in paragraph.runs) and _is_chapter_heading(text):
        return [Piece(HEADING, text, "chapter heading")]
    merged: list[Run] = []  # a number may be split over runs ("1", "0")
    for run in paragraph.runs:
        # bold numbers next to coloured words (a red-letter edition) stay apart
        same = merged and merged[-1].kind == run.kind and (
            run.kind != EMPHASIZED or EMPHASIZED_NUMBER_CHARS.fullmatch(merged[-1].text + run.text))
        if same:
            merged[-1] = Run(merged[-1].text + run.text, run.kind)
        elif run.text:
            merged.append(run)
    pieces: list[Piece] = []
    for run in merged:
        if run.kind == RAISED:
            pieces.extend(_raised_pieces(run.text))
        elif run.kind == EMPHASIZED and EMPHASIZED_NUMBER.fullmatch(run.text.strip()):
            pieces.extend([Piece(TEXT, _leading_space(run.text)), Piece(BOLD_NUMBER, run.text.strip()),
                           Piece(TEXT, _trailing_space(run.text))])
        elif run.kind == NOTE:
            if run.text.strip():
                pieces.append(Piece(LEFT_OUT, run.text.strip(), "footnote marker"))
        elif run.kind == CHAPTER_NUMBER:
            if run.text.strip():
                pieces.append(Piece(CHAPTER, run.text.strip(), "chapter number"))
        else:
            pieces.append(Piece(TEXT, run.text))
    return _joined_text(pieces)


def _raised_pieces(text: str) -> list[Piece]:
    """Digits are verse numbers ("1", "1-2", "1:1": verse 1 of chapter 1), words are text, the
    rest footnote markers, removed: "5a" is verse 5 and marker a."""
    pieces = []
    position = 0
    for match in MARKED_NUMBER.finditer(text):
        pieces.extend(_raised_text(text[position:match.start()]))
        pieces.append(Piece(VERSE, match["label"]))
        position = match.end()
    pieces.extend(_raised_text(text[position:]))
    return pieces


def _raised_text(text: str) -> list[Piece]:
    # a whole word in superscript or in a verse style is text that a style was put on by mistake
    return [Piece(TEXT, text)] if re.search(r"[^\W\d_]{3}", text) else []


def _leading_space(text: str) -> str:
    return text[:len(text) - len(text.lstrip())]


def _trailing_space(text: str) -> str:
    return text[len(text.rstrip()):]


def _joined_text(pieces: Iterable[Piece]) -> list[Piece]:
    joined: list[Piece] = []
    for piece in pieces:
        if piece.kind == TEXT and not piece.text:
            continue
        if piece.kind == TEXT and joined and joined[-1].kind == TEXT:
            joined[-1] = Piece(TEXT, joined[-1].text + piece.text)
        else:
            joined.append(piece)
    return joined


def _is_chapter_heading(text: str) -> bool:
    """A lone "Chapter 1", "CHAPTER 1", "Genesis 1", "Salmo 121", "1 Samuel 3"."""
    match = CHAPTER_HEADING.fullmatch(text)
    return match is not None and match["word"][0].isupper()


def usfm_pieces(text: str) -> list[Piece]:
    """The pieces of USFM text (as exported from Paratext): ``\\v 1`` starts a verse, ``\\c 1``
    is a chapter number, headings and titles (``\\s1``, ``\\mt1``, ``\\d``, ``\\id``...) run to
    the end of their line and are left out, as are footnotes and cross references (``\\f ...\\f*``,
    ``\\x ...\\x*``); paragraph and poetry markers (``\\p``, ``\\q1``) break lines, and character
    markers (``\\wj``, ``\\nd``...) are dropped with their attributes, keeping their text."""
    text = USFM_ATTRIBUTES.sub("", text)
    pieces: list[Piece] = []
    heading: tuple[str, list[str]] | None = None  # marker and text of an open heading line
    note: tuple[str, list[str]] | None = None  # marker and text of an open footnote

    def close_heading() -> None:
        nonlocal heading
        if heading is not None:
            marker, parts = heading
            content = " ".join("".join(parts).split())
            if content:
                pieces.append(Piece(LEFT_OUT, content, f"USFM \\{marker} ({_usfm_unspoken(marker)})"))
            heading = None

    def add_text(stretch: str) -> None:
        if note is not None:
            note[1].append(stretch)
            return
        if heading is not None:
            line, newline, rest = stretch.partition("\n")
            heading[1].append(line)
            if not newline:
                return
            close_heading()
            stretch = newline + rest
        pieces.append(Piece(TEXT, stretch))

    position = 0
    for match in USFM_MARKER.finditer(text):
        if match.start() < position:  # inside a \v or \c number already read
            continue
        add_text(text[position:match.start()])
        position = match.end()
        marker, closing = match["marker"], bool(match["closing"])
        if note is not None:
            if closing and marker == note[0]:
                content = " ".join(USFM_MARKER.sub(" ", "".join(note[1])).split()).lstrip("+-? ")
                reason = USFM_NOTES[marker]
                if reason:
                    pieces.append(Piece(LEFT_OUT, content, f"{reason} (USFM \\{marker})"))
                note = None
            continue
        if closing:
            continue
        if marker in USFM_NOTES:
            note = (marker, [])
        elif marker in ("v", "c"):
            number = USFM_NUMBER.match(text, position)
            if number is None:
                continue
            position = number.end()
            close_heading()
            if marker == "v":
                pieces.append(Piece(VERSE, number["label"]))
            else:
                pieces.append(Piece(CHAPTER, number["label"], "USFM \\c (chapter number)"))
        elif _usfm_unspoken(marker):
            close_heading()
            heading = (marker, [])
        elif re.sub(r"\d+$", "", marker) in USFM_LINE_BREAKS:
            close_heading()
            pieces.append(Piece(TEXT, "\n"))
    add_text(text[position:])
    close_heading()
    return _joined_text(pieces)


def _usfm_unspoken(marker: str) -> str:
    """What an unspoken USFM paragraph marker is ("section heading"), or "" for a spoken one."""
    return USFM_UNSPOKEN.get(re.sub(r"\d+$", "", marker), "")


def usfm_style_reason(style: str) -> str | None:
    """Why a paragraph style of a USFM/Paratext export ("s1", "mt1", "r", "Section Head") is not
    read aloud, or None."""
    name = style.strip().casefold()
    marker = re.match(r"\\?([a-z]+\d*)(?:$|\s+-\s)", name)
    if marker is not None and _usfm_unspoken(marker[1]):
        return _usfm_unspoken(marker[1])
    squashed = _squashed(style)
    return next((what for part, what in EXPORT_HEADING_STYLES.items() if part in squashed), None)


# --------------------------------------------------------------------------- plain verse numbers


def plain_number_candidates(text: str) -> list[NumberCandidate]:
    """The numbers in running text that could start a verse: one to three digits (a range "4-5",
    a reference "1:4") after the start, a space or a line break, before a space and a letter
    ("2 And", "2 “Let"); "1." and "1)" at a paragraph start; glued "2And" after punctuation, as
    text copied from a web page has it; a lone number paragraph ("1" in a table cell). A number
    scores highest at a paragraph start, then after sentence punctuation, then after a word; after
    a capitalized word or a word such as "chapter" and before a lower-case one ("Psalm 23 says",
    "chapter 3 tells") it is no candidate."""
    candidates = []
    for match in PLAIN_NUMBER.finditer(text):
        before_end = match.start()
        while before_end > 0 and text[before_end - 1] in " \t\u00a0":
            before_end -= 1
        last_char = text[before_end - 1] if before_end else "\n"
        previous = text[match.start() - 1] if match.start() else ""
        following = match["next"]
        at_start = last_char == "\n"
        if "\n" in match["space"] and not at_start:
            continue  # a number that ends a paragraph: "Salmo 121"
        if match["suffix"] and not (at_start and match["space"]):
            continue  # "12." and "12)" only start a paragraph
        if not match["space"] and not following.isupper():
            continue  # glued to a word: "2nd"
        glued_to_punctuation = previous and not previous.isspace()
        if glued_to_punctuation and (previous not in CLOSING_PUNCTUATION or match["space"]):
            continue  # glued to punctuation, only as in "created.2And"
        first, last = int(match["first"]), int(match["last"] or match["first"])
        if last < first or last - first > MAX_RANGE_VERSES:
            continue
        if at_start:
            score = 4
        elif last_char in CLOSING_PUNCTUATION:
            score = 3
        else:
            word = text[max(0, before_end - MAX_WORD_CHARS):before_end].split()[-1]
            if word.casefold() in REFERENCE_WORDS:
                continue
            score = 0 if word[:1].isupper() else 1
        if score == 0 and not following.isupper():
            continue  # "Psalm 23 says"
        score += following.isupper()
        label_end = match.end("last") if match["last"] else match.end("first")
        candidates.append(NumberCandidate(
            match.start(), match.end("suffix"), text[match.start("first"):label_end], first, last,
            int(match["chapter"]) if match["chapter"] else None, score, at_start))
    return candidates


def choose_verse_numbers(candidates: Sequence[NumberCandidate],
                         chapter_positions: Sequence[int] = ()) -> list[NumberCandidate]:
    """The chain of candidates most likely to be the verse numbers: numbers that follow each other
    (each the next verse: last + 1), in the same form (all "12" or all "3:12" of one chapter),
    as many as there are, then the best placed. The first is verse 1, verse 2 after a chapter
    number (verse 1 unnumbered next to a drop cap), or any number at a paragraph start. A number
    may skip verses at a paragraph start, or skip one after sentence punctuation when it is
    followed by a capital (a verse left out of the translation); each skip costs. So "40 days",
    "the year 1999" or "2 sons" inside a verse are text unless they are the next verse number and
    nothing better placed is."""
    order = sorted(range(len(candidates)), key=lambda i: candidates[i].start)
    value = [float("-inf")] * len(candidates)
    parent: list[int | None] = [None] * len(candidates)
    best_by_last: dict[tuple[int | None, int], int] = {}  # (chapter, last number) -> candidate
    for i in order:
        candidate = candidates[i]
        if candidate.score < 1:
            continue
        gain = VERSE_WEIGHT + candidate.score
        after_chapter = any(position <= candidate.start for position in chapter_positions)
        if candidate.first == 1 or (candidate.first == 2 and after_chapter):
            value[i] = gain
        elif candidate.at_paragraph_start:
            value[i] = gain - SKIP_PENALTY
        follows = best_by_last.get((candidate.chapter, candidate.first - 1))
        if follows is not None and value[follows] + gain > value[i]:
            value[i], parent[i] = value[follows] + gain, follows
        for (chapter, last), j in best_by_last.items():
            skipped = candidate.first - last - 1
            allowed = candidate.at_paragraph_start or (skipped == 1 and candidate.score >= 4)
            if chapter == candidate.chapter and skipped > 0 and allowed and (
                    value[j] + gain - SKIP_PENALTY > value[i]):
                value[i], parent[i] = value[j] + gain - SKIP_PENALTY, j
        if value[i] == float("-inf"):
            continue
        key = (candidate.chapter, candidate.last)
        if key not in best_by_last or value[i] > value[best_by_last[key]]:
            best_by_last[key] = i
    if not best_by_last:
        return []
    end = max(best_by_last.values(), key=lambda i: (value[i], -candidates[i].start))
    chain = []
    while end is not None:
        chain.append(candidates[end])
        end = parent[end]
    return chain[::-1]


def _mark_plain_numbers(readable: list[tuple[Paragraph, list[Piece]]]
                        ) -> list[tuple[Paragraph, list[Piece]]]:
    """The paragraphs with the verse numbers ``choose_verse_numbers`` finds in their text made
    VERSE pieces. Heading paragraphs take no part: their numbers are chapter numbers."""
    stream = []
    offset = 0
    text_at: list[tuple[int, int, int]] = []  # stream offset, paragraph, piece of each TEXT piece
    chapter_positions = []
    for paragraph_position, (_, pieces) in enumerate(readable):
        for piece_position, piece in enumerate(pieces):
            if piece.kind == TEXT:
                text_at.append((offset, paragraph_position, piece_position))
                stream.append(piece.text)
                offset += len(piece.text)
            elif piece.kind in (CHAPTER, HEADING):
                chapter_positions.append(offset)
                stream.append("\n")
                offset += 1
        stream.append("\n")
        offset += 1
    chosen = choose_verse_numbers(plain_number_candidates("".join(stream)), chapter_positions)
    cuts: dict[tuple[int, int], list[tuple[int, int, str]]] = {}  # piece -> (start, end, label)
    starts = [start for start, _, _ in text_at]
    for candidate in chosen:
        where = bisect.bisect_right(starts, candidate.start) - 1
        start, paragraph_position, piece_position = text_at[where]
        cuts.setdefault((paragraph_position, piece_position), []).append(
            (candidate.start - start, candidate.end - start, candidate.label))
    marked = []
    for paragraph_position, (paragraph, pieces) in enumerate(readable):
        new_pieces = []
        for piece_position, piece in enumerate(pieces):
            position = 0
            for start, end, label in cuts.get((paragraph_position, piece_position), []):
                new_pieces.extend([Piece(TEXT, piece.text[position:start]), Piece(VERSE, label)])
                position = end
            new_pieces.append(Piece(piece.kind, piece.text[position:], piece.reason)
                              if position else piece)
        marked.append((paragraph, _joined_text(new_pieces)))
    return marked


def plain_verse_number(text: str, last: int | None,
                       raised_numbers_seen: bool) -> tuple[str, str] | None:
    """The verse number a paragraph without marked verse numbers starts with, and the rest, in a
    document whose verse numbers are marked (superscript, a verse style, bold, USFM).

    Before the first marked number, any number after the last verse counts. Once numbers are
    marked, a paragraph that starts with a number is more likely a sentence ("40 days
    later..."), so only the very next verse number counts there."""
    match = PLAIN_NUMBER_START.match(text)
    if match is None:
        return None
    first, _ = parse_label(match[1])
    if last is not None and (first <= last or (raised_numbers_seen and first != last + 1)):
        return None
    return match[1], text[match.end():]


# --------------------------------------------------------------------------- finding the verses


def skip_reason(paragraph: Paragraph, skip_styles: Sequence[str],
                skip_patterns: Sequence[re.Pattern]) -> str | None:
    """Why a paragraph is not read, or None when it is: a style in ``skip_styles`` (or based on
    one), a whole text matching a pattern, or a heading style of a USFM/Paratext export."""
    for name in (paragraph.style, *paragraph.base_styles):
        if any(fnmatch.fnmatchcase(name.casefold(), glob.casefold()) for glob in skip_styles):
            if name == paragraph.style:
                return f"style {name}"
            return f"style {paragraph.style} (based on {name})"
    text = paragraph.text.strip()
    for pattern in skip_patterns:
        if pattern.fullmatch(text):
            return f"pattern {pattern.pattern}"
    what = usfm_style_reason(paragraph.style)
    if what:
        return f"style {paragraph.style} ({what})"
    return None


def parse_label(label: str) -> tuple[int, int] | None:
    """First and last verse number of a label such as "3" or "3-4"; None if it is not one."""
    match = NUMBER_LABEL.fullmatch(label.strip())
    if match is None:
        return None
    first = int(match[1])
    return first, int(match[2]) if match[2] else first


def _join_drop_caps(paragraphs: Sequence[Paragraph]) -> list[Paragraph]:
    """A drop-cap letter (a frame of its own in Word) joined to the paragraph it begins."""
    joined: list[Paragraph] = []
    for paragraph in paragraphs:
        if joined and joined[-1].drop_cap and not joined[-1].text.strip().isdigit():
            drop = joined.pop()
            letter = tuple(Run(run.text.strip(), run.kind) for run in drop.runs)
            paragraph = Paragraph(paragraph.index, paragraph.style, letter + paragraph.runs,
                                  paragraph.base_styles)
        joined.append(paragraph)
    return joined


def _resolve_bold_numbers(readable: list[tuple[Paragraph, list[Piece]]]
                          ) -> list[tuple[Paragraph, list[Piece]]]:
    """Bold or coloured numbers are verse numbers where nothing else marks them and the document
    has several; then those that run in order are (``choose_verse_numbers``), and the others are
    emphasis ("the 7 days"), read as text, or the chapter number when they come first ("3 1 In
    the beginning", or "3 Now the serpent ... 2 And", verse 1 unnumbered)."""
    bold = [(paragraph_position, piece_position, piece)
            for paragraph_position, (_, pieces) in enumerate(readable)
            for piece_position, piece in enumerate(pieces) if piece.kind == BOLD_NUMBER]
    marked = any(piece.kind == VERSE for _, pieces in readable for piece in pieces)
    chosen: set[int] = set()
    if len(bold) >= MIN_BOLD_NUMBERS and not marked:
        candidates = []
        for order, (_, _, piece) in enumerate(bold):
            label = EMPHASIZED_NUMBER.fullmatch(piece.text)["label"]
            first, last = parse_label(label)
            candidates.append(
                NumberCandidate(order, order, label, first, last, None, BOLD_NUMBER_SCORE, True))
        chain = choose_verse_numbers(candidates, chapter_positions=[0])
        chosen = {candidate.start for candidate in chain}
    first_chosen = min(chosen, default=len(bold))
    replaced: dict[tuple[int, int], Piece] = {}
    for order, (paragraph_position, piece_position, piece) in enumerate(bold):
        if order in chosen:
            replaced[paragraph_position, piece_position] = Piece(
                VERSE, EMPHASIZED_NUMBER.fullmatch(piece.text)["label"])
        elif chosen and order < first_chosen:
            replaced[paragraph_position, piece_position] = Piece(CHAPTER, piece.text, "chapter number")
        else:
            replaced[paragraph_position, piece_position] = Piece(TEXT, piece.text)
    return [(paragraph, _joined_text(replaced.get((paragraph_position, piece_position), piece)
                                     for piece_position, piece in enumerate(pieces)))
            for paragraph_position, (paragraph, pieces) in enumerate(readable)]


def _leading_chapter_numbers(readable: list[tuple[Paragraph, list[Piece]]]
                             ) -> list[tuple[Paragraph, list[Piece]]]:
    """A paragraph of a lone number other than 1 before any verse text is the chapter number
    ("121" over Psalm 121). A lone 1 may be verse 1 in a table; it is left to the verse search."""
    result = []
    text_seen = False
    for paragraph, pieces in readable:
        lone = [piece.text.strip() for piece in pieces if piece.kind == TEXT and piece.text.strip()]
        only_text = all(piece.kind == TEXT for piece in pieces)
        if not text_seen and only_text and len(lone) == 1 and lone[0].isdigit() and lone[0] != "1":
            result.append((paragraph, [Piece(CHAPTER, lone[0], "chapter number")]))
            continue
        text_seen = text_seen or any(piece.kind in (TEXT, VERSE, BOLD_NUMBER) and piece.text.strip()
                                     for piece in pieces)
        result.append((paragraph, pieces))
    return result


def find_verses(paragraphs: Sequence[Paragraph], skip_styles: Sequence[str] = SKIP_STYLES,
                skip_patterns: Sequence[re.Pattern] = ()) -> tuple[list[DocxVerse], list[dict], list[str]]:
    """The verses in reading order, the skipped paragraphs (and left-out pieces: chapter numbers,
    footnotes, USFM headings) in document order, and warnings (gaps in the numbers).

    Where the document marks its verse numbers (superscript, a verse style, bold, USFM ``\\v``),
    those are the verse numbers, and a paragraph may also start with the next one in plain
    digits (``plain_verse_number``). Where it marks none, the verse numbers are the plain numbers
    in its text that run 1, 2, 3... (``choose_verse_numbers``).

    Raises TextError when there are no verses, or a marked verse number repeats or goes backwards."""
    readable: list[tuple[Paragraph, list[Piece]]] = []
    skipped: list[dict] = []
    skipped_by_style = 0
    for paragraph in _join_drop_caps(paragraphs):
        if not paragraph.text.strip():
            continue
        reason = skip_reason(paragraph, skip_styles, skip_patterns)
        if reason is None:
            readable.append((paragraph, paragraph_pieces(paragraph)))
            continue
        skipped_by_style += reason.startswith("style ")
        text = paragraph.text.strip()
        if _is_chapter_heading(text) or text.isdigit():  # unnumbered text after it may be verse 1
            readable.append((paragraph, [Piece(CHAPTER, text, reason)]))
        else:
            skipped.append({"paragraph": paragraph.index, "style": paragraph.style, "text": text,
                            "reason": reason})
    readable = _leading_chapter_numbers(_resolve_bold_numbers(readable))
    marked = any(piece.kind == VERSE for _, pieces in readable for piece in pieces)
    if not marked:
        readable = _mark_plain_numbers(readable)
    verses, left_out, warnings = _assemble_verses(readable, marked)
    if not verses:
        raise TextError("no verses found (looked for verse numbers in superscript, in a verse character "
                        "style, in bold, as USFM \\v markers, or as plain numbers running 1, 2, 3 in "
                        f"the text; skipped {skipped_by_style} paragraphs by style)")
    skipped = sorted(skipped + left_out, key=lambda entry: entry["paragraph"])
    return verses, skipped, warnings


def _assemble_verses(readable: Sequence[tuple[Paragraph, list[Piece]]],
                     marked: bool) -> tuple[list[DocxVerse], list[dict], list[str]]:
    verses: list[DocxVerse] = []
    skipped: list[dict] = []
    warnings: list[str] = []
    current: dict | None = None  # the verse being read: label, first, last, parts
    marked_numbers_seen = False
    chapter_seen = False
    before_chapter: list[tuple[Paragraph, str]] = []  # text before the first verse
    since_chapter: list[tuple[Paragraph, str]] = []  # ... after the last chapter number

    def finish() -> None:
        if current is not None:
            text = " ".join("".join(current["parts"]).split())
            verses.append(DocxVerse(current["first"], current["label"], text, current["last"]))

    def leave_out(paragraph: Paragraph, text: str, reason: str) -> None:
        skipped.append({"paragraph": paragraph.index, "style": paragraph.style,
                        "text": " ".join(text.split()), "reason": reason})

    def leave_out_text(stretches: list[tuple[Paragraph, str]]) -> None:
        by_paragraph: dict[int, tuple[Paragraph, list[str]]] = {}
        for paragraph, text in stretches:
            by_paragraph.setdefault(paragraph.index, (paragraph, []))[1].append(text)
        for paragraph, texts in by_paragraph.values():
            text = " ".join("".join(texts).split())
            if text:
                reason = "chapter number" if text.isdigit() else "before the first verse"
                leave_out(paragraph, text, reason)

    for paragraph, pieces in readable:
        if current is not None:
            current["parts"].append("\n")  # a verse that goes on in this paragraph
        elif since_chapter:
            since_chapter.append((paragraph, "\n"))
        if marked and not any(piece.kind == VERSE for piece in pieces):
            pieces = _with_plain_number(pieces, current["last"] if current else None, marked_numbers_seen)
        for piece in pieces:
            kind = piece.kind
            if kind == HEADING and current is None:
                kind = CHAPTER
            if kind in (CHAPTER, LEFT_OUT):
                leave_out(paragraph, piece.text, piece.reason)
                if kind == CHAPTER and current is None:
                    chapter_seen = True
                    before_chapter.extend(since_chapter)
                    since_chapter = []
                continue
            if kind in (TEXT, HEADING):
                if current is not None:
                    current["parts"].append(piece.text)
                else:
                    (since_chapter if chapter_seen else before_chapter).append((paragraph, piece.text))
                continue
            first, final = parse_label(piece.text)
            marked_numbers_seen = marked_numbers_seen or kind == VERSE
            if final < first:
                raise TextError(f"verse range {piece.text} runs backwards")
            if current is None:
                unnumbered = "".join(text for _, text in since_chapter)
                if first == 2 and unnumbered.strip():  # verse 1 after a chapter number goes unnumbered
                    current = {"label": "1", "first": 1, "last": 1, "parts": [unnumbered]}
                else:
                    before_chapter.extend(since_chapter)
                leave_out_text(before_chapter)
            if current is not None and first <= current["last"]:
                what = "is repeated" if first >= current["first"] else "goes backwards"
                raise TextError(f"verse number {piece.text} {what} (after verse {current['label']}, "
                                f"paragraph {paragraph.index})")
            if current is not None and first > current["last"] + 1:
                missing = (f"{current['last'] + 1}" if first == current["last"] + 2
                           else f"{current['last'] + 1}-{first - 1}")
                warnings.append(f"verse numbers skip {missing} (verse {piece.text} follows verse "
                                f"{current['label']})")
            finish()
            current = {"label": piece.text, "first": first, "last": final, "parts": []}
    finish()
    return verses, skipped, warnings


def _with_plain_number(pieces: list[Piece], last: int | None, marked_numbers_seen: bool) -> list[Piece]:
    """The paragraph's pieces with the plain verse number it starts with, if any, made a piece."""
    for position, piece in enumerate(pieces):
        if piece.kind != TEXT:
            continue
        plain = plain_verse_number(piece.text, last, marked_numbers_seen)
        if plain is None:
            return pieces
        return [*pieces[:position], Piece(PLAIN, plain[0]), Piece(TEXT, plain[1]), *pieces[position + 1:]]
    return pieces


# --------------------------------------------------------------------------- sanity checks


def sentence_count(text: str) -> int:
    return len(SENTENCE_END.findall(text))


def sanity_warnings(verses: Sequence[DocxVerse]) -> list[str]:
    """Warnings, one line each, when the verses look wrongly cut: far fewer verses than
    sentences, a verse of minutes of speech, or numbers left in a verse's text that look like the
    verse numbers after it (verse numbers that were not recognized)."""
    warnings = []
    sentences = sum(sentence_count(verse.text) for verse in verses)
    if sentences >= MIN_SENTENCES_TO_COUNT and len(verses) * MAX_SENTENCES_PER_VERSE < sentences:
        warnings.append(
            f"only {len(verses)} verse{'s' if len(verses) > 1 else ''} for {sentences} sentences: "
            "are the verse numbers bold or plain digits inside the paragraph, or not numbers 1, 2, 3 "
            "in order? check the DOCX, or set text.skip_styles / text.skip_patterns for paragraphs "
            "that are not verse text")
    long_verses = [(verse, len(verse.text.split())) for verse in verses
                   if len(verse.text.split()) > MAX_VERSE_WORDS]
    if long_verses:
        listed = ", ".join(f"{verse.label} ({words} words, about {words / WORDS_PER_MINUTE:.0f} min "
                           "read aloud)" for verse, words in long_verses)
        warnings.append(
            f"verse{'s' if len(long_verses) > 1 else ''} {listed} "
            f"{'are' if len(long_verses) > 1 else 'is'} over {MAX_VERSE_WORDS} words: "
            "verse numbers inside were probably not found; check how the DOCX writes them")
    hidden = [(verse, numbers) for verse in verses if (numbers := _hidden_verse_numbers(verse))]
    if hidden:
        listed = "; ".join(f"verse {verse.label}: {', '.join(map(str, numbers))}"
                           for verse, numbers in hidden)
        warnings.append(
            f"numbers in the text look like verse numbers ({listed}): if they are, mark them in the "
            "DOCX (superscript, bold or a verse style) or make them run in order with the others")
    return warnings


def _hidden_verse_numbers(verse: DocxVerse) -> list[int]:
    """Numbers in a verse's text that look like the verse numbers after it: the next one, or
    two or more going up in small steps from the verse's number ("7 days and 40 nights" do not)."""
    chain = []
    reached = verse.last
    for candidate in plain_number_candidates(verse.text):
        if reached < candidate.first <= reached + MAX_HIDDEN_STEP:
            chain.append(candidate.first)
            reached = candidate.last
    return chain if verse.last + 1 in chain or len(chain) >= 2 else []


def read_verses(docx_path: str | Path, skip_styles: Sequence[str] = SKIP_STYLES,
                skip_patterns: Sequence[re.Pattern | str] = ()
                ) -> tuple[list[DocxVerse], list[dict], list[str]]:
    """The verses, skipped paragraphs and warnings (gaps, ``sanity_warnings``) of a chapter DOCX,
    without the model's vocabulary. Raises InputError naming the DOCX when it cannot be read or
    has no verses."""
    patterns = [re.compile(pattern) if isinstance(pattern, str) else pattern for pattern in skip_patterns]
    paragraphs = extract_paragraphs(docx_path)
    try:
        verses, skipped, warnings = find_verses(paragraphs, skip_styles, patterns)
    except TextError as err:
        raise InputError(docx_path, str(err)) from None
    return verses, skipped, warnings + sanity_warnings(verses)


# --------------------------------------------------------------------------- normalization


def vocabulary_letters(vocabulary: Sequence[str], word_delimiter: str = WORD_DELIMITER) -> set[str]:
    """The characters the model can emit (:func:`tala.ctc_text.letters_of`)."""
    return letters_of(vocabulary, word_delimiter)


def vocabulary_okina(letters: set[str]) -> str | None:
    return next((form for form in OKINA_PREFERENCE if form in letters), None)


def vocabulary_case(letters: set[str]) -> str:
    """"upper" for a model that spells in capitals only, else "lower"."""
    has_upper = any(ch.isupper() for ch in letters)
    has_lower = any(ch.islower() for ch in letters)
    return "upper" if has_upper and not has_lower else "lower"


def _clusters(text: str) -> Iterator[str]:
    """Characters with the combining marks that follow them."""
    cluster = ""
    for ch in text:
        if cluster and unicodedata.combining(ch):
            cluster += ch
            continue
        if cluster:
            yield cluster
        cluster = ch
    if cluster:
        yield cluster


def _strip_marks(text: str) -> str:
    return unicodedata.normalize(
        "NFC", "".join(ch for ch in unicodedata.normalize("NFD", text) if not unicodedata.combining(ch)))


def _apply_char_map(text: str, char_map: dict[str, str], report: CharacterReport) -> str:
    if not char_map:
        return text
    keys = sorted(char_map, key=len, reverse=True)  # longest first: "ng" before "n"
    pattern = re.compile("|".join(re.escape(key) for key in keys))

    def replace(match: re.Match) -> str:
        report.mapped[match[0], char_map[match[0]]] += 1
        return char_map[match[0]]

    return pattern.sub(replace, text)


def normalize_text(text: str, letters: set[str],
                   options: NormalizeOptions = NormalizeOptions()) -> tuple[str, CharacterReport]:
    """The words of ``text`` spelled with the vocabulary's characters, separated by single spaces.

    ``letters`` is ``vocabulary_letters(vocabulary)``. Punctuation and symbols not in the
    vocabulary break words ("Ajuntem-se" -> "ajuntem se"); a character outside the vocabulary
    becomes its base letter if that is in it ("è" -> "e"); anything else (digits, foreign
    letters) is left out and counted in the report's ``unmapped``."""
    report = CharacterReport()
    text = unicodedata.normalize("NFC", text)
    text = _apply_char_map(text, {unicodedata.normalize("NFC", key): value
                                  for key, value in options.char_map.items()}, report)
    if options.case == "lower":
        text = text.lower()
    elif options.case == "upper":
        text = text.upper()
    out: list[str] = []
    for cluster in _clusters(text):
        if cluster.isspace() or cluster in WORD_BREAKS_INVISIBLE:
            out.append(" ")
            continue
        if options.strip_macrons and MACRON in unicodedata.normalize("NFD", cluster):
            plain = unicodedata.normalize(
                "NFC", unicodedata.normalize("NFD", cluster).replace(MACRON, ""))
            report.mapped[cluster, plain] += 1
            cluster = plain
        if cluster in letters:
            out.append(cluster)
        elif options.okina is not None and cluster in OKINA_FORMS:
            report.mapped[cluster, options.okina] += 1
            out.append(options.okina)
        elif unicodedata.category(cluster[0])[0] in "PS":
            out.append(" ")
        elif unicodedata.category(cluster[0]) == "Cf":  # soft hyphen, joiners: nothing to say
            report.mapped[cluster, ""] += 1
        else:
            base = _strip_marks(cluster)
            if base and all(ch in letters for ch in base):
                report.mapped[cluster, base] += 1
                out.append(base)
            else:
                report.unmapped[cluster] += 1
    return " ".join("".join(out).split()), report


# --------------------------------------------------------------------------- the step


def normalize_verses(verses: Sequence[DocxVerse], letters: set[str],
                     options: NormalizeOptions) -> tuple[list[dict], dict]:
    """The output's "verses" and "characters"; raises TextError for a verse left empty."""
    mapped: dict[tuple[str, str], int] = Counter()
    unmapped: dict[str, dict] = {}
    records = []
    for verse in verses:
        normalized, report = normalize_text(verse.text, letters, options)
        if not normalized:
            raise TextError(f"verse {verse.label} has no text the model can align "
                            f"(text: {verse.text!r})")
        mapped.update(report.mapped)
        for ch, count in report.unmapped.items():
            entry = unmapped.setdefault(ch, {"count": 0, "verses": [], "name": _char_name(ch)})
            entry["count"] += count
            entry["verses"].append(verse.number)
        records.append({"number": verse.number, "label": verse.label, "text": verse.text,
                        "normalized": normalized})
    return records, {
        "mapped": {source: {"to": target, "count": count}
                   for (source, target), count in sorted(mapped.items())},
        "unmapped": dict(sorted(unmapped.items())),
    }


def _char_name(cluster: str) -> str:
    return " + ".join(unicodedata.name(ch, f"U+{ord(ch):04X}") for ch in cluster)


def unmapped_warning(docx_path: str, unmapped: dict[str, dict]) -> str | None:
    """The one warning line naming the characters left out, or None if there are none."""
    message = unmapped_message(unmapped)
    return f"warning: {docx_path}: {message}" if message else None


def unmapped_message(unmapped: dict[str, dict]) -> str | None:
    """``unmapped_warning`` without the "warning: <docx>:" prefix, as the output JSON keeps it."""
    if not unmapped:
        return None
    total = sum(entry["count"] for entry in unmapped.values())
    parts = []
    for ch, entry in unmapped.items():
        where = ", ".join(str(number) for number in entry["verses"])
        plural = "s" if len(entry["verses"]) > 1 else ""
        parts.append(f"{ch!r} ({entry['name']}) x{entry['count']} in verse{plural} {where}")
    line = (f"{total} character{'s' if total > 1 else ''} not in the model's vocabulary "
            f"{'were' if total > 1 else 'was'} left out: {'; '.join(parts)}")
    if any(unicodedata.category(ch[0]) == "Nd" for ch in unmapped):
        line += ("; numbers written as digits cannot be aligned: spell them out in the DOCX "
                 "or map them with text.char_map in the config (--char-map for tala.align.read_text)")
    return line


def _char_map_arg(value: str) -> dict[str, str]:
    try:
        char_map = json.loads(value)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from None
    if not isinstance(char_map, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in char_map.items()):
        raise argparse.ArgumentTypeError('must be a JSON object of strings, e.g. \'{"ß": "ss"}\'')
    return char_map


def _regex_arg(value: str) -> re.Pattern:
    try:
        return re.compile(value)
    except re.error as err:
        raise argparse.ArgumentTypeError(f"bad regular expression {value!r}: {err}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tala.align.read_text",
        description="Read the verses of a chapter DOCX and normalize them to the ASR model's "
                    "vocabulary for alignment.")
    parser.add_argument("docx", help="the official chapter text (.docx)")
    parser.add_argument("output", help="JSON to write")
    parser.add_argument("--model", required=True,
                        help="the transcription model (Hugging Face id or local folder): its vocab.json is read, "
                             "the model is not loaded")
    parser.add_argument("--adapter", default=None, help="the language of a multilingual (MMS) vocabulary, e.g. smo")
    parser.add_argument("--models-dir", default="resources/models",
                        help="where download_models put hub models (default: %(default)s)")
    parser.add_argument("--recording", help="the recording id (default: the DOCX's name without .docx; a "
                                            "recordings sheet may name the DOCX otherwise)")
    parser.add_argument("--skip-style", action="append", metavar="NAME",
                        help="paragraph style not read aloud; case-insensitive, * matches "
                             "anything; repeat for more; replaces the defaults "
                             f"({', '.join(SKIP_STYLES)})")
    parser.add_argument("--skip-pattern", action="append", default=[], type=_regex_arg,
                        metavar="REGEX", help="skip paragraphs whose whole text matches; repeatable")
    parser.add_argument("--char-map", type=_char_map_arg, default={}, metavar="JSON",
                        help='extra replacements applied first, e.g. \'{"ß": "ss"}\'')
    parser.add_argument("--okina", metavar="CHAR",
                        help="the okina character of the vocabulary, that ' ‘ ’ ` ʼ ʻ become "
                             "(default: the one the vocabulary has, if any)")
    parser.add_argument("--macrons", choices=("keep", "strip"), default="keep",
                        help="strip macrons (ā -> a) for a model without them (default: keep)")
    parser.add_argument("--keep-case", action="store_true",
                        help="do not change letter case (default: lower, or upper for a model "
                             "that has capitals only)")
    args = parser.parse_args(argv)
    if args.okina is not None and len(args.okina) != 1:
        parser.error(f"--okina must be one character, got {args.okina!r}")
    skip_styles = tuple(args.skip_style) if args.skip_style else SKIP_STYLES
    recording = args.recording or Path(args.docx).stem

    vocabulary = model_vocabulary(args.model, args.adapter, args.models_dir)
    delimiter = vocabulary.word_delimiter or WORD_DELIMITER
    letters = vocabulary_letters(vocabulary.tokens, delimiter)
    okina = args.okina or vocabulary_okina(letters)
    if okina is not None and okina not in letters:
        raise InputError(args.model, f"--okina {okina!r} is not in the model's vocabulary")
    options = NormalizeOptions(
        char_map=args.char_map, okina=okina, strip_macrons=args.macrons == "strip",
        case="keep" if args.keep_case else vocabulary_case(letters))

    verses, skipped, warnings = read_verses(args.docx, skip_styles, args.skip_pattern)
    try:
        records, characters = normalize_verses(verses, letters, options)
    except TextError as err:
        # The DOCX reads, but the model cannot align it: the chapter is rejected, not the run (the
        # aligner passes the reason on to the problems table).
        write_json_atomic(args.output, {"recording": recording, "docx": args.docx, "status": "rejected",
                                        "stage": "read_text", "reason": str(err)})
        print(f"rejected: {args.docx}: {err}", file=sys.stderr)
        return 0
    characters_warning = unmapped_message(characters["unmapped"])
    if characters_warning:
        warnings.append(characters_warning)
    for warning in warnings:
        print(f"warning: {args.docx}: {warning}", file=sys.stderr)

    write_json_atomic(args.output, {
        "recording": recording,
        "docx": args.docx,
        "status": "ok",
        "vocabulary_from": {"model": args.model, "adapter": args.adapter},
        "verses": records,
        "skipped": skipped,
        "characters": characters,
        "warnings": warnings,
        "settings": {
            "skip_styles": list(skip_styles),
            "skip_patterns": [pattern.pattern for pattern in args.skip_pattern],
            "char_map": args.char_map,
            "okina": okina,
            "macrons": args.macrons,
            "case": options.case,
            "word_delimiter": delimiter,
        },
        "tool": tala.tool("python-docx"),
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
