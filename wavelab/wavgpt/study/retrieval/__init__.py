"""Retrieval at scale with WavGPT codes: ``python -m wavelab.wavgpt.study.retrieval``."""
