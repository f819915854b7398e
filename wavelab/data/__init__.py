"""Text data every model can use: corpora, streaming preparation, token caches, DataLoaders."""
