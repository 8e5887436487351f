"""Stage inspect (workflow/rules/inspect.smk): inspect_inputs, the per-language checkpoint that sorts recordings into ok / audio-only / excluded before any audio is decoded."""
