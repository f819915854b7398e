"""GPT and WaveGPT in and out of the Hugging Face format.

``export``: a GPT as a plain ``GPT2LMHeadModel`` dir, a WaveGPT as a dir with its own modeling
file (``modeling_wavegpt``, loaded with ``trust_remote_code``), each with its tokenizer
(``tokenizer_files``). ``gpt2_dir``: reading a ``GPT2LMHeadModel`` dir safely, and
``init_from``: starting from it (``model.init_from``). ``gpt2_map``: the one mapping of names,
layouts and settings between the two. ``bench``: generation speed against transformers'.
"""
