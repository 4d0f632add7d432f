"""Tokenizers: characters and byte-level BPE. Note: notes/tokenizers.md"""

from .char import CharTokenizer
from .bpe import BPETokenizer, learn_bpe, GPT2_PATTERN
