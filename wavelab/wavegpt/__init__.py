"""WaveGPT and GPT: a GPT decoder with an optional WaveNet branch (``model=wavegpt``, ``model=gpt``)."""
