"""Stage asr (workflow/rules/asr.smk): download_model(s) for offline nodes and transcribe_audio (windowed CTC inference, greedy transcript, stored emissions)."""
