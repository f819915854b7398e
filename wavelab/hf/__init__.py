"""wavelab's language models in and out of the Hugging Face format.

``export``: a GPT checkpoint as a plain ``GPT2LMHeadModel`` dir, a WaveGPT one as a dir with its
own modeling file (``modeling_wavegpt``, loaded with ``trust_remote_code``), each with its
tokenizer. ``gpt2_dir``: reading a ``GPT2LMHeadModel`` dir safely, for ``model.init_from``.
``gpt2_map``: the one mapping of names, shapes and settings between the two.
"""
