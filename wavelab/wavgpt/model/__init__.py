"""WavGPT's model: the pure nn.Module parts (coders, lifting, filter, refiner, losses, the frozen
encoder), no Lightning and no data code."""
