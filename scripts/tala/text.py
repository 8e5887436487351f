"""Read the verses of an official chapter DOCX and normalize them for the CTC aligner.

    python -m tala.text DOCX ASR_JSON OUT_JSON [--skip-style NAME ...] [--skip-pattern REGEX ...]
                       [--char-map JSON] [--okina CHAR] [--macrons keep|strip] [--keep-case]

Paragraphs in an unspoken style (titles, headings, footnotes, captions, headers, footers, tables
of contents) or whose whole text matches a ``--skip-pattern`` are left out, and listed in the
output's "skipped" with the reason. A verse starts at its verse number: digits (or a range such
as "1-2") in a superscript run or in a character style named like "Verse Number". Other
superscript runs are footnote markers and are removed. A paragraph without such a run may start
with a plain number ("12 In the beginning"); see ``plain_verse_number`` for when that counts.
Verses may span paragraphs, and a paragraph may hold several verses.

Each verse's text is then normalized to what the aligner consumes, driven by the model's
vocabulary (the "vocabulary" of the transcription step's JSON): lower case, punctuation as word
breaks, okina variants unified, letters outside the vocabulary mapped to their base letter where
that is in the vocabulary. Whatever still cannot be spelled with the vocabulary (digits, foreign
letters) is left out of the normalized text, listed under "characters.unmapped" and named in one
warning on stderr, never dropped silently.
"""

from __future__ import annotations

import argparse
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
from docx.opc.exceptions import OpcError
from docx.table import Table
from docx.text.hyperlink import Hyperlink
from docx.text.paragraph import Paragraph as DocxParagraph
from lxml import etree

from tala.errors import InputError, run_cli
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
PLAIN_NUMBER_START = re.compile(r"\s*(\d+(?:[-–—]\d+)?)\s+(?=\S)")


class TextError(ValueError):
    """The document's verses cannot be read; main reports it against the DOCX."""


@dataclass(frozen=True)
class Run:
    """A piece of a paragraph's text; ``raised`` when it is superscript or in a verse-number or
    note-reference character style (a verse number if it is digits, else a footnote marker)."""

    text: str
    raised: bool = False


@dataclass(frozen=True)
class Paragraph:
    index: int
    style: str
    runs: tuple[Run, ...]
    base_styles: tuple[str, ...] = ()  # the styles ``style`` is based on, nearest first

    @property
    def text(self) -> str:
        return "".join(run.text for run in self.runs)


@dataclass(frozen=True)
class Verse:
    number: int  # the first number of a range
    label: str  # as written: "1", "1-2"
    text: str  # whitespace collapsed, footnote markers removed
    last: int  # the last number of a range


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
    return [_paragraph(index, paragraph)
            for index, paragraph in enumerate(_iter_paragraphs(document.iter_inner_content()))]


def _iter_paragraphs(content: Iterable) -> Iterator[DocxParagraph]:
    for block in content:
        if isinstance(block, Table):
            for row in block.rows:
                for cell in row.cells:
                    yield from _iter_paragraphs(cell.iter_inner_content())
        else:
            yield block


def _paragraph(index: int, paragraph: DocxParagraph) -> Paragraph:
    runs = []
    for item in paragraph.iter_inner_content():
        for run in item.runs if isinstance(item, Hyperlink) else (item,):
            runs.append(Run(run.text, _is_raised(run)))
    style = paragraph.style
    base_styles = []
    base = style.base_style if style is not None else None
    while base is not None and len(base_styles) < 20:
        base_styles.append(base.name)
        base = base.base_style
    return Paragraph(index, style.name if style is not None else "", tuple(runs), tuple(base_styles))


def _is_raised(run) -> bool:
    if run.font.superscript:
        return True
    style = run.style
    if style is None or style.name is None:
        return False
    name = style.name.casefold()
    # python-docx reads a character style's own formatting only, not inherited through base styles
    return ("verse" in name or "footnote reference" in name or "endnote reference" in name
            or bool(style.font.superscript))


# --------------------------------------------------------------------------- finding the verses


def skip_reason(paragraph: Paragraph, skip_styles: Sequence[str],
                skip_patterns: Sequence[re.Pattern]) -> str | None:
    """Why a paragraph is not read, or None when it is."""
    for name in (paragraph.style, *paragraph.base_styles):
        if any(fnmatch.fnmatchcase(name.casefold(), glob.casefold()) for glob in skip_styles):
            if name == paragraph.style:
                return f"style {name}"
            return f"style {paragraph.style} (based on {name})"
    text = paragraph.text.strip()
    for pattern in skip_patterns:
        if pattern.fullmatch(text):
            return f"pattern {pattern.pattern}"
    return None


def parse_label(label: str) -> tuple[int, int] | None:
    """First and last verse number of a label such as "3" or "3-4"; None if it is not one."""
    match = NUMBER_LABEL.fullmatch(label.strip())
    if match is None:
        return None
    first = int(match[1])
    return first, int(match[2]) if match[2] else first


def plain_verse_number(text: str, last: int | None,
                       raised_numbers_seen: bool) -> tuple[str, str] | None:
    """The verse number a paragraph without raised verse numbers starts with, and the rest.

    In a document numbered this way, any number after the last verse counts. Where verses are
    numbered in superscript, a paragraph that starts with a number is more likely a sentence
    ("40 days later..."), so only the very next verse number counts there."""
    match = PLAIN_NUMBER_START.match(text)
    if match is None:
        return None
    first, _ = parse_label(match[1])
    if last is not None and (first <= last or (raised_numbers_seen and first != last + 1)):
        return None
    return match[1], text[match.end():]


def _pieces(paragraph: Paragraph, last: int | None,
            raised_numbers_seen: bool) -> list[tuple[str, str]]:
    """The paragraph as ("number", label), ("plain", label) and ("text", text) pieces, footnote
    markers removed; "plain" is a number found by ``plain_verse_number``."""
    merged: list[Run] = []  # a number may be split over runs ("1", "0")
    for run in paragraph.runs:
        if merged and merged[-1].raised == run.raised:
            merged[-1] = Run(merged[-1].text + run.text, run.raised)
        elif run.text:
            merged.append(run)
    pieces = []
    for run in merged:
        if not run.raised:
            pieces.append(("text", run.text))
        else:  # digits are verse numbers, the rest footnote markers: "5a" is verse 5, marker a
            pieces.extend(("number", match[0]) for match in NUMBER_LABEL.finditer(run.text))
    if any(kind == "number" for kind, _ in pieces):
        return pieces
    text = "".join(piece for _, piece in pieces)
    plain = plain_verse_number(text, last, raised_numbers_seen)
    if plain is None:
        return pieces
    return [("plain", plain[0]), ("text", plain[1])]


def find_verses(paragraphs: Sequence[Paragraph], skip_styles: Sequence[str] = SKIP_STYLES,
                skip_patterns: Sequence[re.Pattern] = ()) -> tuple[list[Verse], list[dict], list[str]]:
    """The verses in reading order, the skipped paragraphs, and warnings (gaps in the numbers).

    Raises TextError when there are no verses, or a verse number repeats or goes backwards."""
    verses: list[Verse] = []
    skipped: list[dict] = []
    warnings: list[str] = []
    current: dict | None = None  # the verse being read: label, first, last, parts
    raised_numbers_seen = False
    skipped_by_style = 0

    def finish() -> None:
        if current is not None:
            text = " ".join("".join(current["parts"]).split())
            verses.append(Verse(current["first"], current["label"], text, current["last"]))

    for paragraph in paragraphs:
        if not paragraph.text.strip():
            continue
        reason = skip_reason(paragraph, skip_styles, skip_patterns)
        if reason is not None:
            skipped_by_style += reason.startswith("style ")
            skipped.append({"paragraph": paragraph.index, "style": paragraph.style,
                            "text": paragraph.text.strip(), "reason": reason})
            continue
        last = current["last"] if current is not None else None
        if current is not None:
            current["parts"].append("\n")  # a verse that goes on in this paragraph
        before_first: list[str] = []
        for kind, value in _pieces(paragraph, last, raised_numbers_seen):
            if kind == "text":
                (current["parts"] if current is not None else before_first).append(value)
                continue
            first, final = parse_label(value)
            raised_numbers_seen = raised_numbers_seen or kind == "number"
            if final < first:
                raise TextError(f"verse range {value} runs backwards")
            if current is not None and first <= current["last"]:
                what = "is repeated" if first >= current["first"] else "goes backwards"
                raise TextError(f"verse number {value} {what} (after verse {current['label']}, "
                                f"paragraph {paragraph.index})")
            if current is not None and first > current["last"] + 1:
                missing = (f"{current['last'] + 1}" if first == current["last"] + 2
                           else f"{current['last'] + 1}-{first - 1}")
                warnings.append(f"verse numbers skip {missing} (verse {value} follows verse "
                                f"{current['label']})")
            finish()
            current = {"label": value, "first": first, "last": final, "parts": []}
        if "".join(before_first).strip():
            skipped.append({"paragraph": paragraph.index, "style": paragraph.style,
                            "text": " ".join("".join(before_first).split()),
                            "reason": "before the first verse"})
    finish()
    if not verses:
        raise TextError("no verses found (looked for superscript verse numbers or paragraphs "
                        f"starting with a number; skipped {skipped_by_style} paragraphs by style)")
    return verses, skipped, warnings


# --------------------------------------------------------------------------- normalization


def vocabulary_letters(vocabulary: Sequence[str], word_delimiter: str = WORD_DELIMITER) -> set[str]:
    """The characters the model can emit: single-character tokens, less special tokens
    ("<pad>", "<unk>", ...) and the word delimiter."""
    return {token for token in vocabulary
            if len(token) == 1 and token != word_delimiter and not re.fullmatch(r"<.*>", token)}


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


def normalize_verses(verses: Sequence[Verse], letters: set[str],
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
    if not unmapped:
        return None
    total = sum(entry["count"] for entry in unmapped.values())
    parts = []
    for ch, entry in unmapped.items():
        where = ", ".join(str(number) for number in entry["verses"])
        plural = "s" if len(entry["verses"]) > 1 else ""
        parts.append(f"{ch!r} ({entry['name']}) x{entry['count']} in verse{plural} {where}")
    line = (f"warning: {docx_path}: {total} character{'s' if total > 1 else ''} not in the model's "
            f"vocabulary {'were' if total > 1 else 'was'} left out: {'; '.join(parts)}")
    if any(unicodedata.category(ch[0]) == "Nd" for ch in unmapped):
        line += ("; numbers written as digits cannot be aligned: spell them out in the DOCX "
                 "or map them with --char-map")
    return line


def read_vocabulary(path: str | Path) -> tuple[list[str], str]:
    """The vocabulary and word delimiter of the transcription step's JSON."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not a JSON file ({err})") from None
    vocabulary = data.get("vocabulary") if isinstance(data, dict) else None
    if not isinstance(vocabulary, list) or not all(isinstance(t, str) for t in vocabulary):
        raise InputError(path, 'no "vocabulary" list of tokens (is it the transcription step\'s output?)')
    delimiter = data.get("word_delimiter") or WORD_DELIMITER
    return vocabulary, delimiter


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
        prog="python -m tala.text",
        description="Read the verses of a chapter DOCX and normalize them to the ASR model's "
                    "vocabulary for alignment.")
    parser.add_argument("docx", help="the official chapter text (.docx)")
    parser.add_argument("asr_json", help="the transcription step's JSON; its vocabulary is used")
    parser.add_argument("output", help="JSON to write")
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

    vocabulary, delimiter = read_vocabulary(args.asr_json)
    letters = vocabulary_letters(vocabulary, delimiter)
    okina = args.okina or vocabulary_okina(letters)
    if okina is not None and okina not in letters:
        raise InputError(args.asr_json, f"--okina {okina!r} is not in the model's vocabulary")
    options = NormalizeOptions(
        char_map=args.char_map, okina=okina, strip_macrons=args.macrons == "strip",
        case="keep" if args.keep_case else vocabulary_case(letters))

    paragraphs = extract_paragraphs(args.docx)
    try:
        verses, skipped, warnings = find_verses(paragraphs, skip_styles, args.skip_pattern)
        records, characters = normalize_verses(verses, letters, options)
    except TextError as err:
        raise InputError(args.docx, str(err)) from None
    for warning in warnings:
        print(f"warning: {args.docx}: {warning}", file=sys.stderr)
    warning = unmapped_warning(args.docx, characters["unmapped"])
    if warning:
        print(warning, file=sys.stderr)

    write_json_atomic(args.output, {
        "recording": Path(args.docx).stem,
        "docx": args.docx,
        "vocabulary_from": args.asr_json,
        "verses": records,
        "skipped": skipped,
        "characters": characters,
        "settings": {
            "skip_styles": list(skip_styles),
            "skip_patterns": [pattern.pattern for pattern in args.skip_pattern],
            "char_map": args.char_map,
            "okina": okina,
            "macrons": args.macrons,
            "case": options.case,
            "word_delimiter": delimiter,
        },
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
