"""WavGPT's benchmarks (``python -m wavelab.bench wavgpt|codec``)."""
