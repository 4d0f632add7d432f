"""Byte-level byte-pair encoding (Sennrich et al. 2016; byte-level as in GPT-2, Radford et al. 2019).

Ids 0..255 are the 256 bytes (id == byte value); merge k makes id 256 + k; the special
tokens follow the merges, as GPT-2's "<|endoftext|>" = 50256 follows its 50000 merges.
Note: notes/tokenizers.md#byte-pair-encoding
"""

from __future__ import annotations

import heapq
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import regex
import torch
from torch import Tensor

from .char import ids_list, split_special

__all__ = ["BPETokenizer", "learn_bpe", "GPT2_PATTERN"]

# GPT-2's pre-tokenizer (openai/gpt-2 src/encoder.py): contractions, letters, digits,
# other symbols (each optionally after one space), then runs of white space.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _merge(word: list[int], a: int, b: int, new: int) -> list[int]:
    """Replace each occurrence of the pair (a, b) in `word`, left to right, by `new`."""
    out, i, n = [], 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def learn_bpe(word_counts: Mapping[tuple[int, ...], int], num_merges: int, *,
              first_id: int = 256) -> list[tuple[int, int]]:
    """Algorithm 1 of Sennrich et al.: `num_merges` times, merge the most frequent pair.

    word_counts: each distinct word as a tuple of symbol ids, with its frequency, in the
    order the words first occur in the text. Merge k creates the symbol first_id + k.
    Returns the merged pairs in order. Stops early when no pair is left.

    A pair's count is the sum over words of (occurrences in the word) x (word frequency),
    kept up to date incrementally: a merge only revisits the words that contain its pair
    (the `where` index), and a lazy max-heap finds the next best pair.
    Ties go to the pair that occurs first in the text -- the pair Algorithm 1's
    `max(stats, key=stats.get)` picks, since Python dicts keep insertion order.
    Note: notes/tokenizers.md#algorithm-1
    """
    words = [list(w) for w in word_counts]
    freqs = list(word_counts.values())
    size: dict[int, int] = {}  # symbol -> how many original symbols it spans (1 if absent)

    def occurrences(i, w):
        """(pair, (i, offset)) for each pair of word i; offset counts original symbols."""
        offset = 0
        for k in range(len(w) - 1):
            yield (w[k], w[k + 1]), (i, offset)
            offset += size.get(w[k], 1)

    counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    first: dict[tuple[int, int], tuple[int, int]] = {}
    # Algorithm 1: pairs = get_stats(vocab), once; `where` indexes the words holding a pair
    for i, w in enumerate(words):
        for p, at in occurrences(i, w):
            counts[p] += freqs[i]
            where[p].add(i)
            first.setdefault(p, at)
    # max-heap on (count, -first occurrence): entries are (-count, first occurrence, pair)
    heap = [(-c, first[p], p) for p, c in counts.items()]
    heapq.heapify(heap)

    def first_now(p):
        i = min(where[p])
        return next(at for q, at in occurrences(i, words[i]) if q == p)

    def pop_best():
        # Lazy heap. A stored count is never below the pair's count now (a pair that
        # grows is pushed again) and a stored first occurrence is never after the one now
        # (occurrences only disappear), so the first entry found current is the best.
        while heap:
            negc, at, p = heap[0]
            now = counts.get(p, 0)
            if now != -negc:
                heapq.heappop(heap)
                if 0 < now < -negc:
                    heapq.heappush(heap, (-now, at, p))
                continue
            if any(j < len(heap) and heap[j][0] == negc for j in (1, 2)):  # a tie is possible
                at_now = first_now(p)
                if at_now != at:
                    heapq.heapreplace(heap, (negc, at_now, p))
                    continue
            heapq.heappop(heap)
            return p
        return None

    merges: list[tuple[int, int]] = []
    while len(merges) < num_merges:
        # Algorithm 1: best = max(pairs, key=pairs.get)
        best = pop_best()
        if best is None:
            break
        a, b = best
        new = first_id + len(merges)
        size[new] = size.get(a, 1) + size.get(b, 1)
        merges.append(best)
        grown: dict[tuple[int, int], tuple[int, int]] = {}
        # Algorithm 1: vocab = merge_vocab(best, vocab), in the words holding `best` only;
        # their pairs leave the counts as they were and come back as they are now
        for i in where.pop(best):
            w, f = words[i], freqs[i]
            merged = _merge(w, a, b, new)
            old_pairs, new_pairs = list(zip(w, w[1:])), list(zip(merged, merged[1:]))
            for p in old_pairs:
                counts[p] -= f
            for p in new_pairs:
                counts[p] += f
            for p in set(old_pairs).difference(new_pairs, [best]):
                where[p].discard(i)
            appeared = set(new_pairs).difference(old_pairs)  # all hold the new symbol
            for p in appeared:
                where[p].add(i)
            for p, at in occurrences(i, merged):
                if p in appeared and at < grown.get(p, (len(words), 0)):
                    grown[p] = at
            words[i] = merged
        del counts[best]
        for p, at in grown.items():
            heapq.heappush(heap, (-counts[p], at, p))
    return merges


@dataclass(frozen=True)
class BPETokenizer:
    """Byte-level BPE: pre-tokenize with `pattern`, then merge bytes by merge rank.

    merges: the learned pairs of ids, merge k makes id 256 + k; special_tokens: strings
    that encode to one id each (after the merges) and are never split or merged.
    Note: notes/tokenizers.md#byte-pair-encoding
    """

    merges: tuple[tuple[int, int], ...]
    special_tokens: tuple[str, ...] = ()
    pattern: str = GPT2_PATTERN
    _vocab: list[bytes] = field(init=False, repr=False, compare=False)
    _ranks: dict[tuple[int, int], int] = field(init=False, repr=False, compare=False)
    _regex: regex.Pattern = field(init=False, repr=False, compare=False)
    _cache: dict[str, list[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        merges = tuple((int(a), int(b)) for a, b in self.merges)
        specials = tuple(self.special_tokens)
        if len(set(specials)) != len(specials) or any(not s for s in specials):
            raise ValueError(f"special_tokens: expected distinct non-empty strings, got {specials}")
        vocab = [bytes([i]) for i in range(256)]
        for k, (a, b) in enumerate(merges):
            if not (0 <= a < len(vocab) and 0 <= b < len(vocab)):
                raise ValueError(f"merges: merge {k} = ({a}, {b}) uses an id that is not "
                                 f"defined before it (expected ids < {len(vocab)})")
            vocab.append(vocab[a] + vocab[b])
        vocab += [s.encode("utf-8") for s in specials]
        object.__setattr__(self, "merges", merges)
        object.__setattr__(self, "special_tokens", specials)
        object.__setattr__(self, "_vocab", vocab)
        object.__setattr__(self, "_ranks", {p: k for k, p in enumerate(merges)})
        object.__setattr__(self, "_regex", regex.compile(self.pattern))
        object.__setattr__(self, "_cache", {})

    @classmethod
    def train(cls, text: str, vocab_size: int, *, special_tokens: Iterable[str] = (),
              pattern: str = GPT2_PATTERN) -> "BPETokenizer":
        """Learn vocab_size - 256 - len(special_tokens) merges on `text` (fewer if the
        text runs out of pairs). `.merges` holds them. Special tokens in `text` are
        cut out before counting, so no merge spans them.
        """
        specials = tuple(special_tokens)
        if vocab_size < 256 + len(specials):
            raise ValueError(f"vocab_size: expected at least 256 bytes + {len(specials)} "
                             f"special tokens = {256 + len(specials)}, got {vocab_size}")
        find = regex.compile(pattern).findall
        words: Counter[str] = Counter()
        for piece, special in split_special(text, specials):
            if not special:
                words.update(find(piece))
        # a word is its UTF-8 bytes; one-byte words have no pair to merge
        word_counts = {tuple(w.encode("utf-8")): c for w, c in words.items() if len(w.encode("utf-8")) > 1}
        merges = learn_bpe(word_counts, vocab_size - 256 - len(specials))
        return cls(tuple(merges), specials, pattern)

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    @property
    def vocab(self) -> list[bytes]:
        """The bytes of each id (a special token's are its UTF-8 encoding)."""
        return list(self._vocab)

    def token_to_id(self, token: str) -> int:
        """The id of a special token."""
        if token not in self.special_tokens:
            raise KeyError(f"token {token!r} is not a special token; special tokens: {self.special_tokens}")
        return 256 + len(self.merges) + self.special_tokens.index(token)

    def _encode_word(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        ids, ranks = list(word.encode("utf-8")), self._ranks
        while len(ids) > 1:
            # the pair learned earliest is merged first, as in training
            rank, a, b = min((ranks.get(p, len(ranks)), *p) for p in zip(ids, ids[1:]))
            if rank == len(ranks):
                break
            ids = _merge(ids, a, b, 256 + rank)
        if len(self._cache) < 1 << 18:
            self._cache[word] = ids
        return ids

    def encode(self, text: str, *, allow_special: bool = True, as_tensor: bool = False,
               device: torch.device | str | None = None) -> list[int] | Tensor:
        """Ids of `text` (a LongTensor with as_tensor=True).

        With allow_special, occurrences of a special token's string become its id;
        otherwise they are encoded as ordinary text.
        """
        if not isinstance(text, str):
            raise TypeError(f"text: expected str, got {type(text).__name__}")
        ids: list[int] = []
        pieces = split_special(text, self.special_tokens) if allow_special else [(text, False)]
        for piece, special in pieces:
            if special:
                ids.append(self.token_to_id(piece))
            else:
                for word in self._regex.findall(piece):
                    ids.extend(self._encode_word(word))
        if as_tensor:
            return torch.tensor(ids, dtype=torch.long, device=device)
        return ids

    def decode(self, ids: Sequence[int] | Tensor, *, errors: str = "replace") -> str:
        """The text of `ids`. Bytes that are not valid UTF-8 (possible for arbitrary id
        sequences, never for the output of `encode`) follow `errors` as in bytes.decode.
        """
        vocab, out = self._vocab, []
        for position, i in enumerate(ids_list(ids)):
            if not 0 <= i < len(vocab):
                raise ValueError(f"ids: unknown id {i} at position {position}; "
                                 f"expected 0 <= id < vocab_size = {len(vocab)}")
            out.append(vocab[i])
        return b"".join(out).decode("utf-8", errors=errors)

    def to_json(self) -> dict:
        return {"type": "byte-level-bpe", "version": 1, "pattern": self.pattern,
                "special_tokens": list(self.special_tokens),
                "merges": [list(p) for p in self.merges],
                "vocab": [t.hex() for t in self._vocab]}

    @classmethod
    def from_json(cls, data: dict) -> "BPETokenizer":
        if data.get("type") != "byte-level-bpe":
            raise ValueError(f"expected a byte-level BPE tokenizer (type 'byte-level-bpe'), "
                             f"got type {data.get('type')!r}")
        tok = cls(tuple(map(tuple, data["merges"])), tuple(data["special_tokens"]), data["pattern"])
        if "vocab" in data and [bytes.fromhex(h) for h in data["vocab"]] != tok._vocab:
            raise ValueError("vocab: the stored vocab does not match the one its merges build")
        return tok

    def save(self, path: str | Path) -> None:
        """Write merges (id pairs) and vocab (hex bytes per id) as JSON to `path`."""
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "BPETokenizer":
        """Read a tokenizer written by `save`."""
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
