"""Studies of trained WavGPT checkpoints on held-out blocks: retrieval and decoding with a prior."""
