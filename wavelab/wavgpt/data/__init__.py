"""WavGPT's data: WordPiece blocks of a corpus, and the teacher cache of the frozen head."""
