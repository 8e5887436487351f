"""tala: read scripture audio + official texts -> aligned ASR datasets, units and models.

Each module is one workflow step made of pure functions plus a thin ``main()``;
``python -m tala.<step> --help`` documents its command line. Steps know nothing of Snakemake.
"""

__version__ = "0.1.0"
