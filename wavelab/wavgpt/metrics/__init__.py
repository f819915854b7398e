"""Measures of a code against its original: distortion, retrieval, and the lossless references."""
