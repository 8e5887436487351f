import json
import os
import re
import subprocess
import sys
from pathlib import Path

import docx
import pytest
from docx.enum.style import WD_STYLE_TYPE

from tala.errors import run_cli
from tala.align.read_text import (
    NormalizeOptions,
    extract_paragraphs,
    find_verses,
    main,
    normalize_text,
    vocabulary_letters,
)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "demo"
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "|"]
PORTUGUESE_VOCAB = SPECIAL + list("abcdefghijklmnopqrstuvwxyzàáâãçéêíóôõúü")
SAMOAN_VOCAB = SPECIAL + list("aefghiklmnoprstuvāēīōūʻ")


def write_docx(path: Path, paragraphs: list) -> Path:
    """Paragraphs as (style, [(text, superscript), ...]) or (style, "plain text")."""
    document = docx.Document()
    for name in ("Verse", "Poetry", "Footnote Text"):
        document.styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH).base_style = document.styles["Normal"]
    for style, runs in paragraphs:
        paragraph = document.add_paragraph(style=style)
        for text, superscript in ([(runs, False)] if isinstance(runs, str) else runs):
            paragraph.add_run(text).font.superscript = superscript or None
    document.save(str(path))
    return path


def write_model(folder: Path, vocabulary: list[str]) -> Path:
    """A model folder as far as the text step reads it: a flat vocab.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}", encoding="utf-8")
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocabulary)}), encoding="utf-8")
    return folder


def run_step(
    tmp_path: Path, paragraphs: list, vocabulary=PORTUGUESE_VOCAB, *options: str
) -> tuple[int, dict]:
    docx_path = write_docx(tmp_path / "GEN_001.docx", paragraphs)
    model = write_model(tmp_path / "model", vocabulary)
    out = tmp_path / "out.json"
    status = run_cli(main, [str(docx_path), str(out), "--model", str(model), *options])
    return status, json.loads(out.read_text(encoding="utf-8")) if status == 0 else {}


def verses_of(tmp_path: Path, paragraphs: list, **kwargs) -> list:
    verses, _, _ = find_verses(extract_paragraphs(write_docx(tmp_path / "t.docx", paragraphs)), **kwargs)
    return [(verse.label, verse.text) for verse in verses]


def collapse(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- the demo chapters


DEMO_CHAPTERS = sorted((DEMO).glob("*/text/*.docx"))


@pytest.mark.parametrize("docx_path", DEMO_CHAPTERS, ids=lambda p: f"{p.parts[-3]}/{p.stem}")
def test_demo_chapters_give_the_truth_verses(docx_path):
    truth = json.loads((docx_path.parents[1] / "truth" / f"{docx_path.stem}.json").read_text("utf-8"))
    verses, skipped, warnings = find_verses(extract_paragraphs(docx_path))
    assert [(v.number, collapse(v.text)) for v in verses] == [
        (v["number"], collapse(v["text"])) for v in truth["verses"]
    ]
    assert warnings == []
    assert {entry["style"] for entry in skipped} <= {"Title", "Heading 1", "Heading 2", "Footnote Text"}
    vocabulary = SAMOAN_VOCAB if docx_path.parts[-3] == "samoan" else PORTUGUESE_VOCAB
    letters = vocabulary_letters(vocabulary)
    for verse in verses:
        normalized, report = normalize_text(
            verse.text, letters, NormalizeOptions(okina="ʻ" if vocabulary is SAMOAN_VOCAB else None)
        )
        assert normalized and not report.unmapped, (verse.label, report.unmapped)


def test_demo_chapters_are_all_there():
    assert len(DEMO_CHAPTERS) == 13


# --------------------------------------------------------------------------- normalization


def test_punctuation_breaks_words_and_case_is_lowered():
    letters = vocabulary_letters(PORTUGUESE_VOCAB)
    assert normalize_text("E disse Deus: Haja luz;", letters)[0] == "e disse deus haja luz"
    assert normalize_text("Ajuntem-se as águas…  «num lugar»", letters)[0] == "ajuntem se as águas num lugar"


def test_okina_variants_become_the_vocabularys_okina():
    letters = vocabulary_letters(SAMOAN_VOCAB)
    text = "fa'aigoa fa‘aigoa fa’aigoa fa`aigoa faʼaigoa faʻaigoa"
    normalized, report = normalize_text(text, letters, NormalizeOptions(okina="ʻ"))
    assert normalized == " ".join(["faʻaigoa"] * 6)
    assert report.mapped == {(form, "ʻ"): 1 for form in "'‘’`ʼ"}
    assert not report.unmapped


def test_okina_is_found_in_the_vocabulary(tmp_path):
    status, out = run_step(
        tmp_path, [("Normal", [("1", True), ("Ua fa’aigoa e le Atua.", False)])], SAMOAN_VOCAB
    )
    assert status == 0
    assert out["verses"][0]["normalized"] == "ua faʻaigoa e le atua"
    assert out["characters"]["mapped"] == {"’": {"to": "ʻ", "count": 1}}
    assert out["settings"]["okina"] == "ʻ"


def test_portuguese_apostrophe_stays_punctuation(tmp_path):
    status, out = run_step(tmp_path, [("Normal", [("1", True), ("Mãe d'água e gota d’orvalho.", False)])])
    assert status == 0
    assert out["verses"][0]["normalized"] == "mãe d água e gota d orvalho"
    assert out["characters"] == {"mapped": {}, "unmapped": {}}
    assert out["settings"]["okina"] is None


def test_apostrophe_in_the_vocabulary_is_kept():
    letters = vocabulary_letters(SPECIAL + list("abcdefghijklmnopqrstuvwxyz'"))
    normalized, report = normalize_text("Don’t say “don't”.", letters, NormalizeOptions(okina="'"))
    assert normalized == "don't say don't"


def test_letters_outside_the_vocabulary_fall_back_to_their_base_letter():
    letters = vocabulary_letters(PORTUGUESE_VOCAB)
    normalized, report = normalize_text("Èle é naïf", letters)
    assert normalized == "ele é naif"
    assert report.mapped == {("è", "e"): 1, ("ï", "i"): 1}


def test_macrons_are_stripped_only_when_asked():
    letters = vocabulary_letters(SPECIAL + list("aefghiklmnoprstuvʻ"))
    assert normalize_text("pō", letters, NormalizeOptions(strip_macrons=True))[0] == "po"
    # without --macrons strip the macron still falls back to the base letter, but counted
    normalized, report = normalize_text("pō", letters)
    assert normalized == "po" and report.mapped == {("ō", "o"): 1}
    assert normalize_text("pō", vocabulary_letters(SAMOAN_VOCAB))[0] == "pō"


def test_char_map_is_applied_first_and_counted():
    letters = vocabulary_letters(SPECIAL + list("abcdefghijklmnopqrstuvwxyz"))
    normalized, report = normalize_text(
        "Straße 7", letters, NormalizeOptions(char_map={"ß": "ss", "7": "sieben"})
    )
    assert normalized == "strasse sieben"
    assert report.mapped == {("ß", "ss"): 1, ("7", "sieben"): 1}


def test_case_follows_the_vocabulary_or_is_kept(tmp_path):
    upper = SPECIAL + list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    status, out = run_step(tmp_path, [("Normal", [("1", True), ("Let there be light.", False)])], upper)
    assert out["verses"][0]["normalized"] == "LET THERE BE LIGHT"
    mixed = SPECIAL + list("abcdefghijklmnopqrstuvwxyzL")
    status, out = run_step(
        tmp_path, [("Normal", [("1", True), ("Let there be light.", False)])], mixed, "--keep-case"
    )
    assert out["verses"][0]["normalized"] == "Let there be light"
    assert out["settings"]["case"] == "keep"


def test_unmapped_characters_are_reported_and_warned(tmp_path, capsys):
    status, out = run_step(
        tmp_path,
        [("Normal", [("1", True), ("Passaram 7 dias.", False), ("2", True), ("E mais 7 e 40 ŋ.", False)])],
    )
    assert status == 0
    unmapped = out["characters"]["unmapped"]
    assert unmapped["7"] == {"count": 2, "verses": [1, 2], "name": "DIGIT SEVEN"}
    assert unmapped["ŋ"] == {"count": 1, "verses": [2], "name": "LATIN SMALL LETTER ENG"}
    assert set(unmapped) == {"7", "4", "0", "ŋ"}
    assert [v["normalized"] for v in out["verses"]] == ["passaram dias", "e mais e"]
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err.startswith(f"warning: {tmp_path / 'GEN_001.docx'}: 5 characters not in the model's vocabulary")
    assert "'7' (DIGIT SEVEN) x2 in verses 1, 2" in err
    assert "digits cannot be aligned" in err


def test_special_tokens_and_the_delimiter_are_never_produced():
    letters = vocabulary_letters(PORTUGUESE_VOCAB)
    normalized, report = normalize_text("a <unk> | b", letters)
    assert normalized == "a unk b"
    assert not report.unmapped


# --------------------------------------------------------------------------- finding the verses


def test_verse_spans_two_paragraphs(tmp_path):
    assert verses_of(
        tmp_path,
        [
            ("Poetry", [("1", True), ("Levantarei os meus olhos,", False)]),
            ("Poetry", "de onde vem o meu socorro."),
            ("Poetry", [("2", True), ("O meu socorro", False)]),
        ],
    ) == [("1", "Levantarei os meus olhos, de onde vem o meu socorro."), ("2", "O meu socorro")]


def test_footnote_markers_are_removed(tmp_path):
    assert verses_of(
        tmp_path,
        [
            (
                "Normal",
                [
                    ("1", True),
                    ("No princípio era o Verbo", False),
                    ("a", True),
                    (", e o Verbo", False),
                    ("*", True),
                    (" ", False),
                    ("2", True),
                    ("Ele estava", False),
                    ("†", True),
                ],
            ),
        ],
    ) == [("1", "No princípio era o Verbo, e o Verbo"), ("2", "Ele estava")]


def test_verse_number_next_to_a_footnote_marker(tmp_path):
    assert verses_of(
        tmp_path,
        [
            (
                "Normal",
                [
                    ("1", True),
                    ("Um.", False),
                    ("a", True),
                    ("2", True),
                    ("Dois.", False),
                    ("3b", True),
                    ("Três.", False),
                ],
            ),
        ],
    ) == [("1", "Um."), ("2", "Dois."), ("3", "Três.")]


def test_verse_number_character_style_and_ranges(tmp_path):
    path = tmp_path / "styled.docx"
    document = docx.Document()
    document.styles.add_style("Verse Number", WD_STYLE_TYPE.CHARACTER)
    paragraph = document.add_paragraph()
    paragraph.add_run("1–2", style="Verse Number")
    paragraph.add_run("Primeiro e segundo. ")
    paragraph.add_run("1", style="Verse Number")
    paragraph.add_run("0")  # a number split over runs is not this: only the styled run counts
    paragraph.add_run(" tal")
    document.save(str(path))
    with pytest.raises(ValueError, match="verse number 1 is repeated"):
        find_verses(extract_paragraphs(path))
    document = docx.Document()
    document.styles.add_style("Verse Number", WD_STYLE_TYPE.CHARACTER)
    paragraph = document.add_paragraph()
    for text, style in (
        ("1–2", "Verse Number"),
        ("Primeiro e segundo. ", None),
        ("1", "Verse Number"),
        ("0", "Verse Number"),
        ("Décimo.", None),
    ):
        paragraph.add_run(text, style=style)
    document.save(str(path))
    verses, _, warnings = find_verses(extract_paragraphs(path))
    assert [(v.number, v.label, v.last, v.text) for v in verses] == [
        (1, "1–2", 2, "Primeiro e segundo."),
        (10, "10", 10, "Décimo."),
    ]
    assert warnings == ["verse numbers skip 3-9 (verse 10 follows verse 1–2)"]


def test_plain_number_paragraphs(tmp_path):
    assert verses_of(
        tmp_path,
        [
            ("Heading 1", "Capítulo 1"),
            ("Normal", "1 No princípio criou Deus os céus e a terra."),
            ("Normal", "2 E a terra era sem forma."),
            ("Normal", "e vazia."),
            ("Normal", "4 E viu Deus."),
        ],
    ) == [
        ("1", "No princípio criou Deus os céus e a terra."),
        ("2", "E a terra era sem forma. e vazia."),
        ("4", "E viu Deus."),
    ]


def test_plain_number_in_a_superscript_document_is_text_unless_it_is_the_next_verse(tmp_path):
    assert verses_of(
        tmp_path,
        [
            ("Normal", [("1", True), ("E choveu", False)]),
            ("Normal", "40 dias e 40 noites."),
            ("Normal", "2 E parou."),
        ],
    ) == [("1", "E choveu 40 dias e 40 noites."), ("2", "E parou.")]


def test_skipped_paragraphs_are_listed_with_their_reason(tmp_path):
    docx_path = write_docx(
        tmp_path / "t.docx",
        [
            ("Title", "Gênesis"),
            ("Normal", "Capítulo 1"),
            ("Normal", "Introdução ao livro."),
            ("Heading 2", "A criação"),
            ("Normal", [("Texto antes ", False), ("1", True), ("No princípio.", False)]),
            ("Footnote Text", "a 1:2 Ou: o vento de Deus."),
        ],
    )
    verses, skipped, _ = find_verses(
        extract_paragraphs(docx_path), skip_patterns=[re.compile(r"Cap[ií]tulo \d+")]
    )
    assert [(v.label, v.text) for v in verses] == [("1", "No princípio.")]
    assert [(s["paragraph"], s["style"], s["text"], s["reason"]) for s in skipped] == [
        (0, "Title", "Gênesis", "style Title"),
        (1, "Normal", "Capítulo 1", r"pattern Cap[ií]tulo \d+"),
        (2, "Normal", "Introdução ao livro.", "before the first verse"),
        (3, "Heading 2", "A criação", "style Heading 2"),
        (4, "Normal", "Texto antes", "before the first verse"),
        (5, "Footnote Text", "a 1:2 Ou: o vento de Deus.", "style Footnote Text"),
    ]


def test_skip_pattern_and_skip_style_options(tmp_path):
    paragraphs = [
        ("Normal", [("1", True), ("No princípio.", False)]),
        ("Normal", "Capítulo 2"),
        ("Verse", "Nota do editor."),
        ("Normal", [("2", True), ("E a terra.", False)]),
    ]
    status, out = run_step(
        tmp_path,
        paragraphs,
        PORTUGUESE_VOCAB,
        "--skip-pattern",
        r"Cap[ií]tulo \d+",
        "--skip-style",
        "verse",
        "--skip-style",
        "Head*",
    )
    assert status == 0
    assert [v["text"] for v in out["verses"]] == ["No princípio.", "E a terra."]
    assert [s["reason"] for s in out["skipped"]] == [r"pattern Cap[ií]tulo \d+", "style Verse"]
    assert out["settings"]["skip_styles"] == ["verse", "Head*"]
    # without the options, both paragraphs are read as verse 1's text
    status, out = run_step(tmp_path, paragraphs)
    assert out["verses"][0]["normalized"] == "no princípio capítulo nota do editor"


def test_style_based_on_a_heading_is_skipped(tmp_path):
    path = tmp_path / "based.docx"
    document = docx.Document()
    style = document.styles.add_style("Section Head", WD_STYLE_TYPE.PARAGRAPH)
    style.base_style = document.styles["Heading 2"]
    document.add_paragraph("A criação", style="Section Head")
    document.add_paragraph("1 No princípio.")
    document.save(str(path))
    verses, skipped, _ = find_verses(extract_paragraphs(path))
    assert [v.text for v in verses] == ["No princípio."]
    assert skipped[0]["reason"] == "style Section Head (based on Heading 2)"


# --------------------------------------------------------------------------- bad input


def assert_one_line_error(capsys, path: Path, reason: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: {reason}"), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_docx(tmp_path, capsys):
    model = write_model(tmp_path / "model", PORTUGUESE_VOCAB)
    assert run_cli(main, [str(tmp_path / "nope.docx"), str(tmp_path / "o.json"), "--model", str(model)]) == 1
    assert_one_line_error(capsys, tmp_path / "nope.docx", "file not found")


@pytest.mark.parametrize(
    "content",
    [b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90", b"just some text\n", b"", b"PK\x05\x06" + b"\x00" * 18],
)
def test_not_a_docx(tmp_path, capsys, content):
    bad = tmp_path / "GEN_001.docx"
    bad.write_bytes(content)
    model = write_model(tmp_path / "model", PORTUGUESE_VOCAB)
    assert run_cli(main, [str(bad), str(tmp_path / "o.json"), "--model", str(model)]) == 1
    assert_one_line_error(capsys, bad, "not a readable DOCX (Word) file")
    assert not (tmp_path / "o.json").exists()


def test_bad_model_vocabulary_is_named(tmp_path, capsys):
    docx_path = write_docx(tmp_path / "t.docx", [("Normal", "1 Texto.")])
    model = write_model(tmp_path / "model", PORTUGUESE_VOCAB)
    (model / "vocab.json").write_text('["no", "mapping"]')
    assert run_cli(main, [str(docx_path), str(tmp_path / "o.json"), "--model", str(model)]) == 1
    assert_one_line_error(capsys, model / "vocab.json", "not a vocabulary")
    assert run_cli(main, [str(docx_path), str(tmp_path / "o.json"), "--model", str(tmp_path / "none")]) == 1
    assert_one_line_error(capsys, tmp_path / "none", "model folder does not exist")


def test_vocabulary_of_a_multilingual_model_needs_its_language(tmp_path, capsys):
    """MMS keeps one vocabulary per adapter: the text step reads the language's, without the model."""
    model = write_model(tmp_path / "model", PORTUGUESE_VOCAB)
    (model / "vocab.json").write_text(json.dumps({"por": {t: i for i, t in enumerate(PORTUGUESE_VOCAB)},
                                                  "smo": {t: i for i, t in enumerate(SAMOAN_VOCAB)}}))
    docx_path = write_docx(tmp_path / "t.docx", [("Normal", "1 Faʻafetai lava.")])
    out = tmp_path / "o.json"
    assert run_cli(main, [str(docx_path), str(out), "--model", str(model), "--adapter", "smo"]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["verses"][0]["normalized"] == "faʻafetai lava"
    assert run_cli(main, [str(docx_path), str(out), "--model", str(model), "--adapter", "tvl"]) == 1
    assert_one_line_error(capsys, model, "no vocabulary for language 'tvl'; the model has por, smo")


@pytest.mark.parametrize(
    "paragraphs", [[], [("Title", "Gênesis"), ("Heading 1", "Capítulo"), ("Normal", "Texto sem números.")]]
)
def test_no_verses(tmp_path, capsys, paragraphs):
    assert run_step(tmp_path, paragraphs)[0] == 1
    skipped = 2 if paragraphs else 0
    assert_one_line_error(
        capsys,
        tmp_path / "GEN_001.docx",
        "no verses found (looked for verse numbers in superscript, in a verse character style, in bold, "
        "as USFM \\v markers, or as plain numbers running 1, 2, 3 in the text; "
        f"skipped {skipped} paragraphs by style)",
    )


def test_repeated_verse_number(tmp_path, capsys):
    assert (
        run_step(
            tmp_path,
            [
                ("Normal", [("1", True), ("Um.", False), ("2", True), ("Dois.", False)]),
                ("Normal", [("2", True), ("Dois de novo.", False)]),
            ],
        )[0]
        == 1
    )
    assert_one_line_error(
        capsys, tmp_path / "GEN_001.docx", "verse number 2 is repeated (after verse 2, paragraph 1)"
    )


def test_verse_number_going_backwards(tmp_path, capsys):
    assert (
        run_step(tmp_path, [("Normal", [("4", True), ("Quatro.", False), ("3", True), ("Três.", False)])])[0]
        == 1
    )
    assert_one_line_error(capsys, tmp_path / "GEN_001.docx", "verse number 3 goes backwards (after verse 4")


def test_verse_without_alignable_text_rejects_the_chapter(tmp_path, capsys):
    """Not an error of the run: the aligner passes the rejection on to the problems table."""
    status, result = run_step(tmp_path, [("Normal", [("1", True), ("Um.", False), ("2", True), ("— 12 —", False)])])
    assert status == 0
    docx = str(tmp_path / "GEN_001.docx")
    assert result["status"] == "rejected" and result["stage"] == "read_text" and result["docx"] == docx
    assert result["reason"].startswith("verse 2 has no text the model can align") and "verses" not in result
    err = capsys.readouterr().err
    assert err.startswith(f"rejected: {docx}: verse 2 has no text the model can align") and err.count("\n") == 1


# --------------------------------------------------------------------------- the command line


def test_cli_end_to_end(tmp_path):
    docx_path = write_docx(
        tmp_path / "RUT_001.docx",
        [
            ("Title", "Rute"),
            ("Heading 1", "Capítulo 1"),
            ("Verse", [("1", True), ("E sucedeu que, nos dias", False), ("a", True), (" em que", False)]),
            ("Verse", [("os juízes julgavam, houve fome.", False), ("2", True), ("Straße 3.", False)]),
            ("Footnote Text", "a 1:1 Ou: no tempo."),
        ],
    )
    model = write_model(tmp_path / "model", PORTUGUESE_VOCAB)
    out = tmp_path / "text" / "RUT_001.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tala.align.read_text",
            str(docx_path),
            str(out),
            "--model",
            str(model),
            "--char-map",
            '{"ß": "ss"}',
            "--skip-pattern",
            "Nada",
            "--macrons",
            "strip",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": "scripts"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f"warning: {docx_path}: 1 character not in the model's vocabulary was left out: "
        "'3' (DIGIT THREE) x1 in verse 2; numbers written as digits cannot be aligned: "
        "spell them out in the DOCX or map them with text.char_map in the config (--char-map for tala.align.read_text)\n"
    )
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["warnings"] == [result.stderr.removeprefix(f"warning: {docx_path}: ").rstrip("\n")]
    assert data["recording"] == "RUT_001"
    assert data["docx"] == str(docx_path) and data["vocabulary_from"] == {"model": str(model), "adapter": None}
    assert data["verses"] == [
        {
            "number": 1,
            "label": "1",
            "text": "E sucedeu que, nos dias em que os juízes julgavam, houve fome.",
            "normalized": "e sucedeu que nos dias em que os juízes julgavam houve fome",
        },
        {"number": 2, "label": "2", "text": "Straße 3.", "normalized": "strasse"},
    ]
    assert [s["reason"] for s in data["skipped"]] == ["style Title", "style Heading 1", "style Footnote Text"]
    assert data["characters"]["mapped"] == {"ß": {"to": "ss", "count": 1}}
    assert data["settings"] == {
        "skip_styles": [
            "Title",
            "Subtitle",
            "Heading*",
            "Footnote Text",
            "Endnote Text",
            "Caption",
            "Header",
            "Footer",
            "TOC*",
        ],
        "skip_patterns": ["Nada"],
        "char_map": {"ß": "ss"},
        "okina": None,
        "macrons": "strip",
        "case": "lower",
        "word_delimiter": "|",
    }
    assert [p.name for p in out.parent.iterdir()] == ["RUT_001.json"]


def test_cli_rejects_a_bad_char_map(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tala.align.read_text", "a.docx", "b.json", "c.json", "--char-map", "[1]"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": "scripts"},
    )
    assert result.returncode == 2
    assert "--char-map: must be a JSON object of strings" in result.stderr


def test_recording_id_is_the_one_given_not_the_docx_name(tmp_path):
    """A recordings sheet may name a chapter's DOCX otherwise (RUT_001 -> ruth1.docx)."""
    paragraphs = [("Normal", [("1", True), ("Um.", False), ("2", True), ("Dois.", False)])]
    assert run_step(tmp_path, paragraphs)[1]["recording"] == "GEN_001"
    status, result = run_step(tmp_path, paragraphs, PORTUGUESE_VOCAB, "--recording", "RUT_001")
    assert status == 0 and result["recording"] == "RUT_001"
