"""Character tokenizer: one id per distinct character of the training text.

Ids 0..n_chars-1 are the training text's distinct characters in sorted (code point)
order; the special tokens follow, in the order given. Note: notes/tokenizers.md#characters
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["CharTokenizer", "split_special", "ids_list"]


def split_special(text: str, special_tokens: Sequence[str]) -> list[tuple[str, bool]]:
    """Cut `text` at every occurrence of a special token: [(piece, is_special), ...].

    Longer special tokens win over shorter ones that are their prefixes ("<|end|>"
    before "<|e"); ordinary pieces are never empty.
    """
    if not special_tokens:
        return [(text, False)] if text else []
    pattern = "(" + "|".join(re.escape(s) for s in sorted(special_tokens, key=len, reverse=True)) + ")"
    parts = re.split(pattern, text)
    # re.split with one group alternates: text, special, text, special, ..., text
    return [(p, i % 2 == 1) for i, p in enumerate(parts) if p]


def ids_list(ids: Sequence[int] | Tensor, *, name: str = "ids") -> list[int]:
    """A 1-D tensor or a sequence of ints as a list of Python ints (clear error otherwise)."""
    if isinstance(ids, Tensor):
        if ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype.is_complex:
            raise ValueError(f"{name}: expected a 1-D integer tensor, got shape "
                             f"{tuple(ids.shape)} dtype {ids.dtype}")
        return ids.tolist()
    return [int(i) for i in ids]


@dataclass(frozen=True)
class CharTokenizer:
    """Character-level tokenizer (as in char-rnn and nanoGPT's shakespeare_char).

    chars: the vocabulary, sorted distinct characters; special_tokens: extra tokens
    (e.g. "<pad>", "<bos>") with ids after the characters; unk: an optional special
    token that unknown characters map to (without it they raise a ValueError).
    Note: notes/tokenizers.md#characters
    """

    chars: tuple[str, ...]
    special_tokens: tuple[str, ...] = ()
    unk: str | None = None
    _stoi: dict[str, int] = field(init=False, repr=False, compare=False)
    _itos: list[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        chars, specials = tuple(self.chars), tuple(self.special_tokens)
        if self.unk is not None and self.unk not in specials:
            specials = specials + (self.unk,)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"chars: every entry must be one character, got {c!r}")
        if list(chars) != sorted(set(chars)):
            raise ValueError("chars: expected sorted distinct characters, got "
                             f"{''.join(chars)[:40]!r}...")
        if len(set(specials)) != len(specials) or any(not s for s in specials):
            raise ValueError(f"special_tokens: expected distinct non-empty strings, got {specials}")
        object.__setattr__(self, "chars", chars)
        object.__setattr__(self, "special_tokens", specials)
        itos = list(chars) + list(specials)
        object.__setattr__(self, "_itos", itos)
        object.__setattr__(self, "_stoi", {c: i for i, c in enumerate(chars)})

    @classmethod
    def train(cls, text: str, *, special_tokens: Iterable[str] = (),
              unk: str | None = None) -> "CharTokenizer":
        """The tokenizer whose vocabulary is the sorted distinct characters of `text`.

        Occurrences of the special tokens in `text` are not counted as characters.
        """
        specials = tuple(special_tokens)
        pieces = split_special(text, specials + ((unk,) if unk else ()))
        chars = set().union(*(set(p) for p, special in pieces if not special))
        return cls(tuple(sorted(chars)), specials, unk)

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    def token_to_id(self, token: str) -> int:
        """The id of one character or special token."""
        if token in self._stoi:
            return self._stoi[token]
        if token in self.special_tokens:
            return len(self.chars) + self.special_tokens.index(token)
        raise KeyError(f"token {token!r} is not in the vocabulary")

    def encode(self, text: str, *, allow_special: bool = True, as_tensor: bool = False,
               device: torch.device | str | None = None) -> list[int] | Tensor:
        """Ids of the characters of `text` (a LongTensor with as_tensor=True).

        With allow_special, occurrences of a special token's string become its id;
        otherwise they are spelled out character by character.
        """
        if not isinstance(text, str):
            raise TypeError(f"text: expected str, got {type(text).__name__}")
        stoi, n = self._stoi, len(self.chars)
        unk_id = None if self.unk is None else n + self.special_tokens.index(self.unk)
        ids: list[int] = []
        position = 0
        pieces = split_special(text, self.special_tokens) if allow_special else [(text, False)]
        for piece, special in pieces:
            if special:
                ids.append(n + self.special_tokens.index(piece))
            else:
                for offset, c in enumerate(piece):
                    i = stoi.get(c, unk_id)
                    if i is None:
                        raise ValueError(
                            f"text: unknown character {c!r} (U+{ord(c):04X}) at position "
                            f"{position + offset}; the vocabulary has {n} characters "
                            f"(train on text that contains it, or pass unk='<unk>')")
                    ids.append(i)
            position += len(piece)
        if as_tensor:
            return torch.tensor(ids, dtype=torch.long, device=device)
        return ids

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The text of `ids` (a special token decodes to its own string)."""
        itos = self._itos
        out = []
        for position, i in enumerate(ids_list(ids)):
            if not 0 <= i < len(itos):
                raise ValueError(f"ids: unknown id {i} at position {position}; "
                                 f"expected 0 <= id < vocab_size = {len(itos)}")
            out.append(itos[i])
        return "".join(out)

    def to_json(self) -> dict:
        return {"type": "char", "version": 1, "chars": "".join(self.chars),
                "special_tokens": list(self.special_tokens), "unk": self.unk}

    @classmethod
    def from_json(cls, data: dict) -> "CharTokenizer":
        if data.get("type") != "char":
            raise ValueError(f"expected a char tokenizer (type 'char'), got type {data.get('type')!r}")
        return cls(tuple(data["chars"]), tuple(data["special_tokens"]), data["unk"])

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON (UTF-8) to `path`."""
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1),
                              encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "CharTokenizer":
        """Read a tokenizer written by `save`."""
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
