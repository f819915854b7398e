"""WavGPT's analysis plots: the figures, the training callback, and ``python -m wavelab.wavgpt.plots``."""
