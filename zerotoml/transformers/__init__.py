"""Transformers: positional encodings, encoder, decoder, generation, tokenizers. Note: notes/README.md"""
from .positional import sinusoidal, SinusoidalEncoding, LearnedPositions, Rotary, add_positions, rotary_of, n_positions
from .encoder import EncoderLayer, Encoder
from .decoder import DecoderLayer, Decoder
from .encoder_decoder import Transformer, EncoderDecoder, encode, decode
from .gpt import GPT, KVCache
from .tokenizers import CharTokenizer, BPETokenizer
from .generate import beam_search, probabilities, next_token, length_penalty_factor
from .bert import BERT, mask_tokens, masked_accuracy, mlm_head, hidden_states
from .seq2seq import pad_pairs, padding_masks, trim_padding, seq2seq_loss
