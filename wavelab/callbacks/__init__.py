"""Lightning callbacks every model can use."""
