"""Decoding WavGPT codes with and without a language-model prior: ``python -m wavelab.wavgpt.prior_eval``."""
