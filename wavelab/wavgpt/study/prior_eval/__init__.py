"""Decoding WavGPT codes with and without a language-model prior: ``python -m wavelab.wavgpt.study.prior_eval``."""
