"""The unit vocoder: F0 per unit frame, GeneratorV2 training on the units and their audio, resynthesis and its test."""
