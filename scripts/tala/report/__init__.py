"""Stage report (workflow/rules/report.smk): the pages and tables behind `snakemake --report` (audio summary, problems, alignment quality, boundary errors, listening pages)."""
