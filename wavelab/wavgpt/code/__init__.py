"""The WavGPT code's byte format: it imports no model and no Lightning code."""
