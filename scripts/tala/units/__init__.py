"""Acoustic units: features of one model layer → streaming k-means → timestamped units → BPE motifs."""
