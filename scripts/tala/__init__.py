"""tala: read scripture audio + official texts -> aligned ASR datasets, units and models.

The package mirrors the workflow: one subpackage per ``workflow/rules/<stage>.smk`` (``tala.audio``,
``tala.asr``, ``tala.align``, ``tala.dataset``, ``tala.units``, ``tala.inspect``, ``tala.report``, ``tala.finetune``)
holding that stage's steps, each a module of pure functions plus a thin ``main()``
(``python -m tala.<stage>.<step> --help``); the demo's recipes in ``tala.demo``; the shared core at the
top (``fileio``, ``errors``, ``device``, ``config``, ``hub``, ``audio_io``, ``training``, ``ctc_text``,
``frames``). Steps know nothing of Snakemake.
"""

__version__ = "0.1.0"


def tool(*packages: str) -> dict[str, str]:
    """The ``"tool"`` record of a step's JSON: tala's version and those of the distributions named."""
    from importlib.metadata import version

    return {"tala": __version__, **{name: version(name) for name in packages}}
