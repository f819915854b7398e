"""WavGPT codes: text -> a few bytes -> text, with a trained WavGPT checkpoint.

* ``WavGPTCodec`` (``wavelab.codec.api``): encode texts into codes and decode them back;
* ``SparseCode`` and ``code_bits`` (``wavelab.sparse_code``): the byte format and its size;
* ``python -m wavelab.codec`` (``wavelab.codec.__main__``): the same from the command line.
"""

from wavelab.codec.api import CodeSize, WavGPTCodec
from wavelab.sparse_code import SparseCode, code_bits

__all__ = ["CodeSize", "SparseCode", "WavGPTCodec", "code_bits"]
