"""Every code made exact, in total bits per token: ``python -m wavelab.wavgpt.study.exact_bits``."""
