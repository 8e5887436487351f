"""One chapter in the DOCX layouts publishers and Bible software write, built with python-docx.

Each builder writes a DOCX of the given verses, as (label, text), into a folder and returns its
path and the verses ``tala.align.read_text`` must read from it. To cover a new layout, write a builder and
add it to LAYOUTS; tests/test_text_layouts.py runs every one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import docx
from docx.enum.style import WD_STYLE_TYPE
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Pt, RGBColor

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "demo"

Verses = Sequence[tuple[str, str]]
Built = tuple[Path, list[tuple[str, str]]]
RED = RGBColor(0xC0, 0x00, 0x00)


def demo_verses(language: str, recording: str) -> list[tuple[str, str]]:
    """A demo chapter's verses from its truth JSON, as (label, text)."""
    truth = json.loads((DEMO / language / "truth" / f"{recording}.json").read_text(encoding="utf-8"))
    return [(str(verse["number"]), verse["text"]) for verse in truth["verses"]]


PORTUGUESE_GENESIS = demo_verses("portuguese", "GEN_001")
PORTUGUESE_PSALM = demo_verses("portuguese", "PSA_121")
PORTUGUESE_RUTH = demo_verses("portuguese", "RUT_001")
PORTUGUESE_JOHN = demo_verses("portuguese", "JHN_001")
SAMOAN_GENESIS = demo_verses("samoan", "GEN_001")
SAMOAN_PSALM = demo_verses("samoan", "PSA_121")
SAMOAN_RUTH = demo_verses("samoan", "RUT_001")
SAMOAN_JOHN = demo_verses("samoan", "JHN_001")

ENGLISH_GENESIS = [  # King James Version, Genesis 1:1-10
    ("1", "In the beginning God created the heaven and the earth."),
    ("2", "And the earth was without form, and void; and darkness was upon the face of the deep. "
          "And the Spirit of God moved upon the face of the waters."),
    ("3", "And God said, Let there be light: and there was light."),
    ("4", "And God saw the light, that it was good: and God divided the light from the darkness."),
    ("5", "And God called the light Day, and the darkness he called Night. And the evening and the "
          "morning were the first day."),
    ("6", "And God said, Let there be a firmament in the midst of the waters, and let it divide the "
          "waters from the waters."),
    ("7", "And God made the firmament, and divided the waters which were under the firmament from "
          "the waters which were above the firmament: and it was so."),
    ("8", "And God called the firmament Heaven. And the evening and the morning were the second day."),
    ("9", "And God said, Let the waters under the heaven be gathered together unto one place, and let "
          "the dry land appear: and it was so."),
    ("10", "And God called the dry land Earth; and the gathering together of the waters called he "
           "Seas: and God saw that it was good."),
]

# Verses with numbers in them that are not verse numbers.
ENGLISH_WITH_NUMBERS = [
    ("1", "And the rain was upon the earth 40 days and 40 nights."),
    ("2", "In the year 1999 the elders sat in the gate, and they spoke of the flood."),
    ("3", "As Psalm 23 says, The LORD is my shepherd; I shall not want."),
    ("4", "And Noah was 600 years old when the flood of waters was upon the earth."),
    ("5", "And the 12 tribes went up out of the land, every man to his tent."),
    ("6", "And they read from chapter 3 of the book, and all the people wept."),
    ("7", "And the waters prevailed upon the earth 150 days."),
    ("8", "And it came to pass, when the waters were abated,\n"
          "40 days passed, and Noah opened the window of the ark which he had made."),
    ("9", "And he sent forth a raven, which went forth to and fro, until the waters were dried up."),
    ("10", "Also he sent forth a dove from him, to see if the waters were abated from off the ground."),
]


# --------------------------------------------------------------------------- helpers


def _document(*paragraph_styles: str, character_styles: Sequence[str] = ()) -> docx.Document:
    document = docx.Document()
    for name in paragraph_styles:
        if name not in [style.name for style in document.styles]:
            document.styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH).base_style = document.styles["Normal"]
    for name in character_styles:
        if name not in [style.name for style in document.styles]:
            document.styles.add_style(name, WD_STYLE_TYPE.CHARACTER)
    return document


def _add_runs(paragraph, runs: Sequence[tuple[str, str]]) -> None:
    """Runs as (text, format): "" plain, "sup", "bold", "red", "bold+red", "size:36", "style:NAME"."""
    for text, formatting in runs:
        run = paragraph.add_run(text, style=formatting[6:] if formatting.startswith("style:") else None)
        run.font.superscript = True if formatting == "sup" else None
        run.font.bold = True if "bold" in formatting else None
        if "red" in formatting:
            run.font.color.rgb = RED
        if formatting.startswith("size:"):
            run.font.size = Pt(int(formatting[5:]))


def _save(document: docx.Document, directory: Path, name: str) -> Path:
    path = Path(directory) / f"{name}.docx"
    document.save(str(path))
    return path


def _groups(verses: Verses, size: int) -> list[Verses]:
    return [verses[i:i + size] for i in range(0, len(verses), size)]


def _lines(text: str) -> list[str]:
    """A verse as poetry lines, broken after commas and semicolons."""
    return re.split(r"(?<=[,;])\s+", text)


def _running_paragraph(verses: Verses, number_format: str) -> list[tuple[str, str]]:
    runs: list[tuple[str, str]] = []
    for label, text in verses:
        runs += [(label, number_format), (" ", ""), (text + " ", "")]
    return runs


# --------------------------------------------------------------------------- the layouts


def superscript(directory: Path, verses: Verses = PORTUGUESE_GENESIS) -> Built:
    """The demo chapters' layout: superscript numbers, three verses a paragraph, footnote letters."""
    document = _document("Footnote Text")
    document.add_paragraph("Gênesis", style="Title")
    document.add_paragraph("Capítulo 1", style="Heading 1")
    document.add_paragraph("A criação", style="Heading 2")
    for group in _groups(verses, 3):
        runs = []
        for label, text in group:
            runs += [(label, "sup"), (text, ""), ("a" if label == "2" else "", "sup"), (" ", "")]
        _add_runs(document.add_paragraph(), runs)
    document.add_paragraph("a 1:2 Ou: o vento de Deus.", style="Footnote Text")
    return _save(document, directory, "superscript"), list(verses)


def verse_number_style(directory: Path, verses: Verses = SAMOAN_GENESIS) -> Built:
    """Verse numbers in a "Verse Number" character style, not superscript, two verses a paragraph."""
    document = _document(character_styles=["Verse Number"])
    document.add_paragraph("Kenese 1", style="Heading 1")
    for group in _groups(verses, 2):
        runs = []
        for label, text in group:
            runs += [(label, "style:Verse Number"), (f"\u00a0{text} ", "")]
        _add_runs(document.add_paragraph(), runs)
    return _save(document, directory, "verse_number_style"), list(verses)


def paratext_styles(directory: Path, verses: Verses = SAMOAN_PSALM) -> Built:
    """A Paratext export: paragraph styles named for USFM markers (mt1, s1, d, q1, q2), the
    chapter number in character style "c", verse numbers in character style "v"."""
    document = _document("mt1", "s1", "d", "q1", "q2", character_styles=["c", "v"])
    document.add_paragraph("Salamo", style="mt1")
    document.add_paragraph("Le Salamo e Selau ma le Luasefulu ma le Tasi", style="s1")
    document.add_paragraph("O le pese o le alu aʻe", style="d")
    for label, text in verses:
        first, *rest = _lines(text)
        runs = [("121", "style:c")] if label == "1" else []
        _add_runs(document.add_paragraph(style="q1"), runs + [(label, "style:v"), (first, "")])
        for line in rest:
            document.add_paragraph(line, style="q2")
    return _save(document, directory, "paratext_styles"), list(verses)


def bold_inline(directory: Path, verses: Verses = PORTUGUESE_RUTH, number_format: str = "bold",
                name: str = "bold_inline") -> Built:
    """The whole chapter in ONE running paragraph, verse numbers as bold runs."""
    document = _document()
    document.add_paragraph("Capítulo 1", style="Heading 1")
    _add_runs(document.add_paragraph(), _running_paragraph(verses, number_format))
    return _save(document, directory, name), list(verses)


def bold_red_letter(directory: Path, verses: Verses = SAMOAN_JOHN) -> Built:
    """Bold red verse numbers in running paragraphs, some words in red (a red-letter edition):
    the red words are text, not part of a number."""
    document = _document()
    for group in _groups(verses, 4):
        runs = []
        for label, text in group:
            head, _, tail = text.partition(" ")
            runs += [(label, "bold+red"), (" ", ""), (head + " ", "red"), (tail + " ", "")]
        _add_runs(document.add_paragraph(), runs)
    return _save(document, directory, "bold_red_letter"), list(verses)


def coloured_numbers(directory: Path, verses: Verses = PORTUGUESE_JOHN) -> Built:
    """Verse numbers only coloured (red, not bold), in running paragraphs."""
    return bold_inline(directory, verses, number_format="red", name="coloured_numbers")


def plain_inline(directory: Path, verses: Verses = PORTUGUESE_GENESIS) -> Built:
    """The whole chapter in ONE running paragraph, verse numbers as plain digits: "1 No ... 2 E ..."."""
    document = _document()
    document.add_paragraph("Gênesis", style="Title")
    document.add_paragraph(" ".join(f"{label} {text}" for label, text in verses))
    return _save(document, directory, "plain_inline"), list(verses)


def plain_inline_poetry(directory: Path, verses: Verses = PORTUGUESE_PSALM) -> Built:
    """Poetry lines of a psalm, one a paragraph, plain verse numbers: most start a line, some
    come inline after the last line of the verse before; verses go on across lines."""
    document = _document("Poetry")
    document.add_paragraph("Salmo 121", style="Heading 1")
    carried = ""
    for position, (label, text) in enumerate(verses):
        lines = _lines(text)
        lines[0] = f"{carried}{label} {lines[0]}"
        carried = ""
        if position % 3 == 1 and position + 1 < len(verses):  # the next verse starts on this line
            carried = lines.pop() + " "
        for line in lines:
            document.add_paragraph(line, style="Poetry")
    if carried:
        document.add_paragraph(carried.strip(), style="Poetry")
    return _save(document, directory, "plain_inline_poetry"), list(verses)


def verse_per_paragraph(directory: Path, verses: Verses = SAMOAN_RUTH) -> Built:
    """One verse a paragraph, a plain number first; the chapter heading a plain paragraph."""
    document = _document()
    document.add_paragraph("Ruta")
    document.add_paragraph("Mataupu 1")
    for label, text in verses:
        document.add_paragraph(f"{label} {text}")
    return _save(document, directory, "verse_per_paragraph"), list(verses)


def numbered_dot(directory: Path, verses: Verses = ENGLISH_GENESIS) -> Built:
    """One verse a paragraph, numbered "1.", as a numbered list typed by hand."""
    document = _document()
    document.add_paragraph("GENESIS 1")
    for label, text in verses:
        document.add_paragraph(f"{label}. {text}")
    return _save(document, directory, "numbered_dot"), list(verses)


def numbered_parenthesis(directory: Path, verses: Verses = SAMOAN_GENESIS) -> Built:
    """One verse a paragraph, numbered "1)"."""
    document = _document()
    for label, text in verses:
        document.add_paragraph(f"{label}) {text}")
    return _save(document, directory, "numbered_parenthesis"), list(verses)


def chapter_verse(directory: Path, verses: Verses = ENGLISH_GENESIS) -> Built:
    """"chapter:verse" references, "1:1 In the beginning", two verses a paragraph."""
    document = _document()
    document.add_paragraph("Genesis", style="Title")
    for group in _groups(verses, 2):
        document.add_paragraph(" ".join(f"1:{label} {text}" for label, text in group))
    return _save(document, directory, "chapter_verse"), list(verses)


USFM_LINES = [
    r"\id GEN Gênesis, tradução de Almeida",
    r"\h Gênesis",
    r"\toc1 O Livro de Gênesis",
    r"\mt1 Gênesis",
    r"\c 1",
    r"\s1 A criação",
    r"\p",
    r"\v 1 No princípio criou Deus os céus e a terra.",
    r"\v 2 E a terra era sem forma e vazia; e havia trevas sobre a face do abismo; e o \nd Espírito\nd* "
    r"de Deus se movia sobre a face das águas.\f + \fr 1:2 \ft Ou: o vento de Deus.\f*",
    r"\v 3 E disse Deus: Haja luz; e houve luz.",
    r"\v 4 E viu Deus que era boa a luz; e fez Deus separação entre a luz e as trevas.",
    r"\v 5 E Deus chamou à luz Dia; e às trevas chamou Noite. E foi a tarde e a manhã, o dia primeiro.",
    r"\s1 O segundo dia",
    r"\p",
    r'\v 6 E disse Deus: Haja uma expansão no meio das \w águas|lemma="mayim"\w*, e haja separação '
    r"entre águas e águas.\x - \xo 1:6 \xt Jr 10.12\x*",
    r"\q1 \v 7 E fez Deus a expansão, e fez separação entre as águas que estavam debaixo da expansão",
    r"\q2 e as águas que estavam sobre a expansão; e assim foi.",
    r"\v 8 E chamou Deus à expansão Céus; e foi a tarde e a manhã, o dia segundo.",
    r"\p \v 9 E disse Deus: Ajuntem-se as águas debaixo dos céus num lugar; e apareça a porção seca; e "
    r"assim foi.",
]


def usfm_markers(directory: Path) -> Built:
    """USFM text as Paratext exports it to Word, one marker line a paragraph."""
    document = _document()
    for line in USFM_LINES:
        document.add_paragraph(line)
    return _save(document, directory, "usfm_markers"), list(PORTUGUESE_GENESIS)


def usfm_one_paragraph(directory: Path) -> Built:
    """The same USFM in one paragraph, its lines broken by line breaks."""
    document = _document()
    document.add_paragraph().add_run("\n".join(USFM_LINES))
    return _save(document, directory, "usfm_one_paragraph"), list(PORTUGUESE_GENESIS)


def verse_ranges(directory: Path, verses: Verses = ENGLISH_GENESIS) -> Built:
    """Verses bridged as ranges ("4-5", "8–9"), plain digits in running paragraphs."""
    merged = dict(verses)
    bridged = [("1", merged["1"]), ("2", merged["2"]), ("3", merged["3"]),
               ("4-5", f"{merged['4']} {merged['5']}"), ("6", merged["6"]), ("7", merged["7"]),
               ("8–9", f"{merged['8']} {merged['9']}"), ("10", merged["10"])]
    document = _document()
    for group in _groups(bridged, 3):
        document.add_paragraph(" ".join(f"{label} {text}" for label, text in group))
    return _save(document, directory, "verse_ranges"), bridged


def footnotes(directory: Path, verses: Verses = PORTUGUESE_RUTH) -> Built:
    """Superscript verse numbers, numbered footnote markers in a "Footnote Reference" style, and
    the footnotes' text at the end: in "Footnote Text", and in plain paragraphs ("a 1:2 ...")."""
    document = _document("Footnote Text", character_styles=["Footnote Reference"])
    document.add_paragraph("Rute", style="Title")
    notes = 0
    for group in _groups(verses, 3):
        runs = []
        for label, text in group:
            head, _, tail = text.partition(",")
            runs.append((label, "sup"))
            if tail:
                notes += 1
                runs += [(head + ",", ""), (str(notes), "style:Footnote Reference"), (tail, "")]
            else:
                runs.append((text, ""))
            runs.append((" ", ""))
        _add_runs(document.add_paragraph(), runs)
    document.add_paragraph("1 1:1 Hebr.: nos dias do julgar dos juízes.")
    document.add_paragraph("b 1:2 Ou: efrateus.")
    document.add_paragraph("3 1:4 Hebr.: tomaram mulheres moabitas.", style="Footnote Text")
    return _save(document, directory, "footnotes"), list(verses)


def heading_and_drop_cap(directory: Path, verses: Verses = SAMOAN_GENESIS) -> Built:
    """A "MATAUPU 1" paragraph, a section heading, then the chapter number as a big drop-cap run
    at the start of the first paragraph, verse 1 unnumbered, superscript numbers from verse 2."""
    document = _document()
    document.add_paragraph("KENESE")
    document.add_paragraph("MATAUPU 1")
    document.add_paragraph("O le foafoaga", style="Heading 2")
    for group in _groups(verses, 3):
        runs = []
        for label, text in group:
            runs += [("1", "size:36") if label == "1" else (label, "sup"), (text + " ", "")]
        _add_runs(document.add_paragraph(), runs)
    return _save(document, directory, "heading_and_drop_cap"), list(verses)


def _frame_as_drop_cap(paragraph) -> None:
    frame = OxmlElement("w:framePr")
    frame.set(qn("w:dropCap"), "drop")
    frame.set(qn("w:lines"), "3")
    frame.set(qn("w:wrap"), "around")
    frame.set(qn("w:vAnchor"), "text")
    frame.set(qn("w:hAnchor"), "text")
    paragraph._p.get_or_add_pPr().insert(0, frame)


def drop_cap_frame(directory: Path, verses: Verses = PORTUGUESE_PSALM) -> Built:
    """A lone "Salmo 121" paragraph, the chapter number in a Word drop-cap frame, verse 1
    unnumbered, plain inline numbers from verse 2 in running paragraphs."""
    document = _document()
    document.add_paragraph("Salmo 121")
    drop = document.add_paragraph()
    _add_runs(drop, [("121", "size:40")])
    _frame_as_drop_cap(drop)
    for group in _groups(verses, 4):
        document.add_paragraph(" ".join(text if label == "1" else f"{label} {text}" for label, text in group))
    return _save(document, directory, "drop_cap_frame"), list(verses)


def drop_cap_letter(directory: Path, verses: Verses = PORTUGUESE_GENESIS) -> Built:
    """The first letter of verse 1 in a Word drop-cap frame, the chapter heading in a Heading
    style, verse 1 unnumbered, superscript numbers from verse 2."""
    document = _document()
    document.add_paragraph("Capítulo 1", style="Heading 1")
    (_, first_text), *rest = verses
    drop = document.add_paragraph()
    _add_runs(drop, [(first_text[0], "size:40")])
    _frame_as_drop_cap(drop)
    runs = [(first_text[1:] + " ", "")]
    for label, text in rest:
        runs += [(label, "sup"), (text + " ", "")]
    _add_runs(document.add_paragraph(), runs)
    return _save(document, directory, "drop_cap_letter"), list(verses)


def numbers_in_the_text(directory: Path, verses: Verses = ENGLISH_WITH_NUMBERS) -> Built:
    """Plain verse numbers in running paragraphs, and numbers in the verses that are not verse
    numbers: "40 days", "the year 1999", "Psalm 23 says", "chapter 3", a line starting "40 days"."""
    document = _document()
    for group in _groups(verses, 4):
        text = " ".join(f"{label} {text}" for label, text in group)
        for part in text.split("\n"):
            document.add_paragraph(part)
    return _save(document, directory, "numbers_in_the_text"), [
        (label, text.replace("\n", " ")) for label, text in verses]


def table(directory: Path, verses: Verses = SAMOAN_JOHN) -> Built:
    """A two-column table: the verse number in one cell, its text in the next."""
    document = _document()
    document.add_paragraph("Ioane 1", style="Heading 1")
    grid = document.add_table(rows=0, cols=2)
    for label, text in verses:
        cells = grid.add_row().cells
        cells[0].text = label
        cells[1].text = text
    return _save(document, directory, "table"), list(verses)


def web_copy(directory: Path, verses: Verses = ENGLISH_GENESIS) -> Built:
    """Text copied from a web page: numbers glued to the words, "1In the beginning ...earth.2And"."""
    document = _document()
    document.add_paragraph("".join(f"{label}{text}" for label, text in verses))
    return _save(document, directory, "web_copy"), list(verses)


LAYOUTS: list[Callable[[Path], Built]] = [
    superscript, verse_number_style, paratext_styles, bold_inline, bold_red_letter, coloured_numbers,
    plain_inline, plain_inline_poetry, verse_per_paragraph, numbered_dot, numbered_parenthesis,
    chapter_verse, usfm_markers, usfm_one_paragraph, verse_ranges, footnotes, heading_and_drop_cap,
    drop_cap_frame, drop_cap_letter, numbers_in_the_text, table, web_copy,
]


# --------------------------------------------------------------------------- mis-numbered chapters


def numbers_out_of_sequence(directory: Path) -> Path:
    """One running paragraph whose plain numbers do not run 1, 2, 3 (typed as 1, 10, 20, ...):
    read as one long verse, which the sanity warnings must name."""
    verses = PORTUGUESE_GENESIS + PORTUGUESE_RUTH
    document = _document()
    document.add_paragraph(" ".join(f"{position * 10 or 1} {text}"
                                    for position, (_, text) in enumerate(verses)))
    return _save(document, directory, "numbers_out_of_sequence")


def numbers_not_superscript(directory: Path) -> Path:
    """Superscript verse numbers, but verses 3 and 4 typed as plain digits inside the paragraph."""
    document = _document()
    runs = []
    for label, text in PORTUGUESE_GENESIS:
        runs += [(label, "" if label in ("3", "4") else "sup"), (" " if label in ("3", "4") else "", ""),
                 (text + " ", "")]
    _add_runs(document.add_paragraph(), runs)
    return _save(document, directory, "numbers_not_superscript")
