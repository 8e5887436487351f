"""The ``nn.Module`` classes tala trains, one module per family, versioned by suffix
(``GeneratorV2``): a checkpoint names the class that reads it, so a later ``GeneratorV3`` never
silently loads ``V2`` weights. Weights are stored as safetensors."""
