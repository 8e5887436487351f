"""The demo corpus and the demo models: seeded, resumable recipes that synthesize speech (espeak-ng) and really train the small stand-ins shipped in resources/demo."""
