"""WavGPT: decodable wavelet embeddings of a frozen encoder (``model=wavgpt``)."""
