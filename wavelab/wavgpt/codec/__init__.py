"""WavGPT codes: text -> a few bytes -> text, with a trained WavGPT checkpoint.

* ``WavGPTCodec`` (``wavelab.wavgpt.codec.api``): encode texts into codes and decode them back;
* ``SparseCode`` and ``code_bits`` (``wavelab.wavgpt.code.sparse_code``): the byte format and its size;
* ``python -m wavelab.wavgpt.codec`` (``wavelab.wavgpt.codec.__main__``): the same from the command line.
"""

from wavelab.wavgpt.code.sparse_code import SparseCode, code_bits
from wavelab.wavgpt.codec.api import CodeSize, WavGPTCodec

__all__ = ["CodeSize", "SparseCode", "WavGPTCodec", "code_bits"]
