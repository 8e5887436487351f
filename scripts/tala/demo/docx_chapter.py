"""A demo chapter's text as publishers' files look: a DOCX with a title, a chapter heading, section
headings the audio does not read, verse paragraphs with superscript verse numbers and footnote
markers, and footnotes at the end; written byte-reproducibly, and read back as a text step would."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import docx
from docx.enum.style import WD_STYLE_TYPE
from docx.shared import Pt

from tala.demo.chapters import FOOTNOTE_MARKER, ChapterSource, Section

DOCX_DATE = dt.datetime(2024, 6, 1)  # naive: python-docx writes it as UTC
ZIP_DATE = (2024, 6, 1, 0, 0, 0)


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
            for j, piece in enumerate(FOOTNOTE_MARKER.split(chapter.verses[number - 1])):
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

