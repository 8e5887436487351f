"""Stage audio (workflow/rules/audio.smk): convert_audio (any input -> 16 kHz mono WAV) and segment_audio (silence-split spans)."""
