"""Stage dataset (workflow/rules/dataset.smk): cut_clips (scored utterances and their WAV clips) and build_dataset (train/valid/test JSONL, NeMo and Lhotse manifests, card)."""
