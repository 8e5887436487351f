"""tala.align.read_text reads the same verses from every DOCX layout of tests/docx_layouts.py, warns when a
chapter's verse numbers were not found, and gives the aligner the same input whatever the layout."""

import json
from pathlib import Path

import pytest

import docx_layouts
from tala.errors import run_cli
from tala.align.read_text import main, read_verses
from test_text import write_model

DEMO_CHAPTERS = sorted(docx_layouts.DEMO.glob("*/text/*.docx"))
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "|"]
PORTUGUESE_VOCAB = SPECIAL + list("abcdefghijklmnopqrstuvwxyzàáâãçéêíóôõúü")


def collapse(text: str) -> str:
    return " ".join(text.split())


def read(path: Path) -> tuple[list[tuple[str, str]], list[dict], list[str]]:
    verses, skipped, warnings = read_verses(path)
    return [(verse.label, verse.text) for verse in verses], skipped, warnings


@pytest.mark.parametrize("build", docx_layouts.LAYOUTS, ids=lambda build: build.__name__)
def test_layout_gives_its_verses_without_warnings(tmp_path, build):
    path, expected = build(tmp_path)
    verses, _, warnings = read(path)
    assert verses == [(label, collapse(text)) for label, text in expected]
    assert warnings == []


def test_the_corpus_covers_the_layouts():
    assert len(docx_layouts.LAYOUTS) >= 12
    assert len({build.__name__ for build in docx_layouts.LAYOUTS}) == len(docx_layouts.LAYOUTS)


# --------------------------------------------------------------------------- what is left out


def skipped_reasons(skipped: list[dict]) -> list[tuple[str, str]]:
    return [(entry["text"], entry["reason"]) for entry in skipped]


def test_chapter_numbers_and_headings_are_listed_as_skipped(tmp_path):
    _, skipped, _ = read(docx_layouts.heading_and_drop_cap(tmp_path)[0])
    assert skipped_reasons(skipped) == [
        ("KENESE", "before the first verse"),
        ("MATAUPU 1", "chapter heading"),
        ("O le foafoaga", "style Heading 2"),
        ("1", "chapter number"),
    ]
    _, skipped, _ = read(docx_layouts.drop_cap_frame(tmp_path)[0])
    assert skipped_reasons(skipped) == [("Salmo 121", "chapter heading"),
                                        ("121", "chapter number (drop cap)")]
    _, skipped, _ = read(docx_layouts.paratext_styles(tmp_path)[0])
    assert skipped_reasons(skipped) == [
        ("Salamo", "style mt1 (title)"),
        ("Le Salamo e Selau ma le Luasefulu ma le Tasi", "style s1 (section heading)"),
        ("O le pese o le alu aʻe", "style d (psalm title)"),
        ("121", "chapter number"),
    ]


def test_footnotes_are_listed_as_skipped(tmp_path):
    _, skipped, _ = read(docx_layouts.footnotes(tmp_path)[0])
    reasons = skipped_reasons(skipped)
    assert reasons[0] == ("Rute", "style Title")
    notes = sum("," in text for _, text in docx_layouts.PORTUGUESE_RUTH)
    assert [text for text, reason in reasons if reason == "footnote marker"] == [
        str(note) for note in range(1, notes + 1)]
    assert reasons[-3:] == [
        ("1 1:1 Hebr.: nos dias do julgar dos juízes.", "footnote text (a note marker and a reference)"),
        ("b 1:2 Ou: efrateus.", "footnote text (a note marker and a reference)"),
        ("3 1:4 Hebr.: tomaram mulheres moabitas.", "style Footnote Text"),
    ]


def test_usfm_headings_notes_and_chapter_are_listed_as_skipped(tmp_path):
    _, skipped, _ = read(docx_layouts.usfm_markers(tmp_path)[0])
    assert skipped_reasons(skipped) == [
        ("GEN Gênesis, tradução de Almeida", "USFM \\id (identification)"),
        ("Gênesis", "USFM \\h (identification)"),
        ("O Livro de Gênesis", "USFM \\toc1 (identification)"),
        ("Gênesis", "USFM \\mt1 (title)"),
        ("1", "USFM \\c (chapter number)"),
        ("A criação", "USFM \\s1 (section heading)"),
        ("1:2 Ou: o vento de Deus.", "footnote (USFM \\f)"),
        ("O segundo dia", "USFM \\s1 (section heading)"),
        ("1:6 Jr 10.12", "cross reference (USFM \\x)"),
    ]
    _, one_paragraph, _ = read(docx_layouts.usfm_one_paragraph(tmp_path)[0])
    assert skipped_reasons(one_paragraph) == skipped_reasons(skipped)


# --------------------------------------------------------------------------- numbers that are no verse numbers


def test_a_count_that_is_the_next_number_is_text_when_the_verse_number_follows(tmp_path):
    verses = [("1", "And Adam lived, and begat 2 sons of his own."), ("2", "And they grew."),
              ("3", "And in the evening 4 men came."), ("4", "And they went away.")]
    path = tmp_path / "counts.docx"
    document = docx_layouts.docx.Document()
    document.add_paragraph(" ".join(f"{label} {text}" for label, text in verses))
    document.save(str(path))
    found, _, warnings = read(path)
    assert found == verses
    # the counts read as text, and they look like verse numbers: the reader is asked to check
    assert warnings == ["numbers in the text look like verse numbers (verse 1: 2; verse 3: 4): if they "
                        "are, mark them in the DOCX (superscript, bold or a verse style) or make them run "
                        "in order with the others"]


def test_a_single_bold_number_is_emphasis_not_a_verse_number(tmp_path):
    path = tmp_path / "emphasis.docx"
    document = docx_layouts.docx.Document()
    paragraph = document.add_paragraph("1 And the LORD said, Ye shall keep the ")
    paragraph.add_run("7").font.bold = True
    paragraph.add_run(" days. 2 And they kept them.")
    document.save(str(path))
    assert read(path)[0] == [("1", "And the LORD said, Ye shall keep the 7 days."), ("2", "And they kept them.")]


# --------------------------------------------------------------------------- sanity warnings


def test_numbers_out_of_sequence_warn_of_one_long_verse(tmp_path):
    path = docx_layouts.numbers_out_of_sequence(tmp_path)
    verses, _, warnings = read(path)
    assert len(verses) == 1
    assert len(warnings) == 2
    assert warnings[0].startswith("only 1 verse for 19 sentences: are the verse numbers bold or plain "
                                  "digits inside the paragraph")
    assert warnings[1].startswith("verse 1 (")
    assert "over 150 words" in warnings[1]


def test_plain_digits_among_superscript_numbers_are_named(tmp_path):
    path = docx_layouts.numbers_not_superscript(tmp_path)
    verses, _, warnings = read(path)
    assert [label for label, _ in verses] == ["1", "2", "5", "6", "7", "8", "9"]
    assert warnings == [
        "verse numbers skip 3-4 (verse 5 follows verse 2)",
        "numbers in the text look like verse numbers (verse 2: 3, 4): if they are, mark them in the DOCX "
        "(superscript, bold or a verse style) or make them run in order with the others",
    ]


def test_warnings_go_to_stderr_one_line_each_and_into_the_json(tmp_path, capsys):
    docx_path = docx_layouts.numbers_out_of_sequence(tmp_path)
    model = write_model(tmp_path / "model", PORTUGUESE_VOCAB)
    out = tmp_path / "out.json"
    assert run_cli(main, [str(docx_path), str(out), "--model", str(model)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"warning: {docx_path}: {warning}" for warning in data["warnings"]]
    assert len(lines) == 3  # few verses, a long verse, the digits left in the text
    assert lines[0].startswith(f"warning: {docx_path}: only 1 verse for 19 sentences")
    assert "text.char_map in the config (--char-map for tala.align.read_text)" in lines[2]
    assert len(data["verses"]) == 1


def test_good_chapters_write_no_warnings(tmp_path, capsys):
    docx_path, _ = docx_layouts.plain_inline(tmp_path)
    model = write_model(tmp_path / "model", PORTUGUESE_VOCAB)
    out = tmp_path / "out.json"
    assert run_cli(main, [str(docx_path), str(out), "--model", str(model)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["warnings"] == []
    assert capsys.readouterr().err == ""


def test_read_verses_names_the_docx_when_it_fails(tmp_path):
    bad = tmp_path / "GEN_001.docx"
    bad.write_bytes(b"not a zip")
    with pytest.raises(Exception) as failure:
        read_verses(bad)
    assert str(failure.value).startswith(f"{bad}: not a readable DOCX")
    empty = tmp_path / "empty.docx"
    document = docx_layouts.docx.Document()
    document.add_paragraph("Sem números aqui.")
    document.save(str(empty))
    with pytest.raises(Exception) as failure:
        read_verses(empty)
    assert str(failure.value).startswith(f"{empty}: no verses found")


# --------------------------------------------------------------------------- the same input from any layout


@pytest.mark.parametrize("docx_path", DEMO_CHAPTERS, ids=lambda p: f"{p.parts[-3]}/{p.stem}")
@pytest.mark.parametrize("build", [docx_layouts.bold_inline, docx_layouts.plain_inline],
                         ids=lambda build: build.__name__)
def test_any_layout_gives_the_aligner_the_same_verses(tmp_path, docx_path, build):
    truth = docx_layouts.demo_verses(docx_path.parts[-3], docx_path.stem)
    original, _, original_warnings = read(docx_path)
    rewritten, _, warnings = read(build(tmp_path, truth)[0])
    assert [(label, collapse(text)) for label, text in rewritten] == [
        (label, collapse(text)) for label, text in original]
    assert warnings == original_warnings == []


def test_the_demo_chapters_are_all_compared():
    assert len(DEMO_CHAPTERS) == 13
