"""Config validation and recording discovery (tala.config), as the Snakefile runs them."""

import copy

import pytest
import yaml

from tala.config import (
    ConfigError,
    check_folders,
    discover_recordings,
    load_workflow_config,
    load_yaml,
    main as config_main,
    settings,
    validate_config,
)


@pytest.fixture
def corpus(tmp_path):
    audio, text = tmp_path / "audio", tmp_path / "text"
    audio.mkdir()
    text.mkdir()
    for name in ["GEN_001.mp3", "GEN_002.wav", "notes.txt", ".hidden.mp3"]:
        (audio / name).write_bytes(b"x")
    config = {
        "languages": {"samoan": {"audio_dir": str(audio), "text_dir": str(text), "mms_lang": "smo"}},
    }
    return tmp_path, config


def test_real_defaults_and_demo_configs_validate(repo):
    base = load_yaml(repo / "config/config.yaml")
    assert base["languages"] == {}, "config.yaml names no language: none may run that the user did not name"
    validated = validate_config({**base, "languages": {"samoan": {"audio_dir": "a", "mms_lang": "smo"}}})
    assert validated["segment"] == {"threshold_db": -40.0, "min_silence_s": 0.5, "min_span_s": 2.0, "max_span_s": 120.0}
    assert validated["transcribe"]["batch_size"] is None, "config.yaml and the schema agree: null = 1 on a CPU"
    with pytest.raises(ConfigError, match="no languages: describe yours in a config file of your own"):
        validate_config(base)
    merged = copy.deepcopy(base)
    merged.update(load_yaml(repo / "config/demo.yaml"))
    config, recordings = load_workflow_config(merged, base_dir=repo)
    assert set(recordings) == {"samoan", "portuguese", "tuvaluan"}
    assert all(len(recs) >= 3 for recs in recordings.values())


def test_defaults_are_filled_but_language_overrides_stay_sparse(corpus):
    _, config = corpus
    config["segment"] = {"threshold_db": -45}
    config["languages"]["samoan"]["segment"] = {"min_silence_s": 0.3}
    validated = validate_config(config)
    assert validated["segment"]["threshold_db"] == -45
    assert validated["segment"]["max_span_s"] == 120.0
    assert validated["languages"]["samoan"]["segment"] == {"min_silence_s": 0.3}
    samoan = settings(validated, "samoan", "segment")
    assert samoan == {"threshold_db": -45, "min_silence_s": 0.3, "min_span_s": 2.0, "max_span_s": 120.0}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c.update(segmnt={}), "unknown key 'segmnt' (did you mean 'segment'?)"),
        (lambda c: c["languages"]["samoan"].update(audio_folder="x"), "languages.samoan: unknown key 'audio_folder'"),
        (lambda c: c.update(segment={"threshold_db": "loud"}), "segment.threshold_db: 'loud' is not of type 'number'"),
        (lambda c: c.update(segment={"min_silence_s": 0}), "segment.min_silence_s"),
        (lambda c: c["languages"]["samoan"].pop("mms_lang"), "'mms_lang' is a required property"),
        (lambda c: c["languages"]["samoan"].update(mms_lang="Samoan"), "languages.samoan.mms_lang: 'Samoan' does not match"),
        (lambda c: c.update(run_languages=["tongan"]), "run_languages: 'tongan' is not under languages"),
        (lambda c: c.update(languages={}), "languages"),
    ],
)
def test_config_errors_are_one_clear_line(corpus, mutate, message):
    _, config = corpus
    mutate(config)
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_folder_is_named(corpus):
    tmp_path, config = corpus
    config["languages"]["samoan"]["text_dir"] = str(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"languages\.samoan\.text_dir: folder '.*nope' does not exist"):
        check_folders(validate_config(config))


def test_a_config_without_run_languages_runs_only_its_own_languages(repo, corpus):
    """config.yaml is merged under every --configfile: it must not add languages of its own."""
    _, config = corpus
    merged = copy.deepcopy(load_yaml(repo / "config/config.yaml"))
    merged["languages"].update(config["languages"])
    _, recordings = load_workflow_config(merged)
    assert list(recordings) == ["samoan"]


def test_audio_only_language_needs_no_text_folder(corpus):
    _, config = corpus
    del config["languages"]["samoan"]["text_dir"]
    _, recordings = load_workflow_config(config)
    assert all(rec.text is None for rec in recordings["samoan"].values())


def test_config_check_marks_recordings_without_their_text(corpus, capsys):
    tmp_path, config = corpus
    (tmp_path / "text" / "GEN_001.docx").write_bytes(b"x")
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    assert config_main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "samoan: 2 recording(s), 1 without their text" in out
    line = next(line for line in out.splitlines() if "GEN_002" in line)
    assert line.endswith("(text missing: transcribed, not aligned)")
    assert not next(line for line in out.splitlines() if "GEN_001" in line).endswith(")")


def test_unselected_language_folders_are_not_checked(corpus):
    _, config = corpus
    config["languages"]["tongan"] = {"audio_dir": "/nonexistent", "text_dir": "/nonexistent", "mms_lang": "ton"}
    config["run_languages"] = ["samoan"]
    validated, recordings = load_workflow_config(config)
    assert list(recordings) == ["samoan"]


def test_recordings_are_discovered_by_stem(corpus):
    tmp_path, config = corpus
    recs = discover_recordings(validate_config(config))["samoan"]
    assert list(recs) == ["GEN_001", "GEN_002"]
    assert recs["GEN_001"].audio.name == "GEN_001.mp3"
    assert recs["GEN_001"].text == tmp_path / "text" / "GEN_001.docx"


def test_same_stem_twice_is_refused(corpus):
    tmp_path, config = corpus
    (tmp_path / "audio" / "GEN_001.wav").write_bytes(b"x")
    with pytest.raises(ConfigError, match="same id 'GEN_001'"):
        discover_recordings(validate_config(config))


def test_unusable_names_are_refused_with_a_rename_hint(corpus):
    tmp_path, config = corpus
    (tmp_path / "audio" / "chapter {1}.mp3").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"rename it, e.g. to 'chapter _1_'"):
        discover_recordings(validate_config(config))


def test_shell_hostile_but_usable_names_are_accepted(corpus):
    tmp_path, config = corpus
    (tmp_path / "audio" / "it's $(touch x) ch 2.mp3").write_bytes(b"x")
    recs = discover_recordings(validate_config(config))["samoan"]
    assert "it's $(touch x) ch 2" in recs


def test_empty_audio_folder_is_an_error(corpus):
    tmp_path, config = corpus
    for f in (tmp_path / "audio").iterdir():
        f.unlink()
    with pytest.raises(ConfigError, match="no recordings found"):
        discover_recordings(validate_config(config))


def test_recordings_sheet(corpus):
    tmp_path, config = corpus
    sheet = tmp_path / "recordings.tsv"
    sheet.write_text("recording\taudio\ttext\nRUT_001\tGEN_002.wav\truth1.docx\nGEN_001\tGEN_001.mp3\t\n")
    config["languages"]["samoan"]["recordings"] = str(sheet)
    recs = discover_recordings(validate_config(config))["samoan"]
    assert list(recs) == ["GEN_001", "RUT_001"]
    assert recs["RUT_001"].audio.name == "GEN_002.wav"
    assert recs["RUT_001"].text.name == "ruth1.docx"
    assert recs["GEN_001"].text.name == "GEN_001.docx"
    sheet.write_text("recording\taudio\nX\tmissing.mp3\n")
    with pytest.raises(ConfigError, match=r"line 2: audio file '.*missing.mp3' does not exist"):
        discover_recordings(validate_config(config))
    sheet.write_text("recording\tfile\nX\tGEN_001.mp3\n")
    with pytest.raises(ConfigError, match="line 2"):
        discover_recordings(validate_config(config))


def test_config_yaml_shows_every_stage_default_as_the_schema_has_it(repo):
    """A user reads the defaults in config/config.yaml: they must be the schema's, section by section."""
    base = load_yaml(repo / "config/config.yaml")
    schema = load_yaml(repo / "workflow/schemas/config.schema.yaml")
    for section in ("segment", "transcribe", "text", "align", "dataset"):
        defaults = {key: spec["default"] for key, spec in schema["definitions"][section]["properties"].items()}
        assert base[section] == defaults, section
