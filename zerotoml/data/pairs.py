"""Sentence pairs for translation: Bible verses aligned across two SWORD modules, the
user's tab-separated files (Tatoeba, manythings.org), a seeded split, a length filter,
and BLEU. A pair is a plain ``(source, target)`` tuple of strings.
Note: notes/translation_data.md.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .common import DataFormatError
from .sword import module_verses

__all__ = ["bible_pairs", "gale_church", "read_pairs_tsv", "split_pairs", "filter_pairs", "bleu"]

Pair = tuple[str, str]


def bible_pairs(src: str = "web", tgt: str = "sparv", root: str | os.PathLike | None = None,
                *, check_lengths: bool = True,
                refs: bool = False) -> list[Pair] | list[tuple[tuple[str, int, int], str, str]]:
    """``[(src_verse, tgt_verse), ...]``: the verses both modules have, matched by
    ``(book, chapter, verse)``, in the source's canonical order; verses empty on either
    side are dropped. Defaults: World English Bible -> Reina-Valera 1909, from Debian's
    ``sword-text-web`` and ``sword-text-sparv`` (`find_module` says how to install them).

    ``check_lengths`` also drops the pairs that a length-based alignment (`gale_church`,
    run on the chapters where some pair's lengths disagree) does not match one to one:
    verses that a module numbers differently (Job 39-41, Numbers 13) or that carry extra
    text (a colophon after an epistle's last verse). ``refs=True`` gives
    ``[((book, chapter, verse), src, tgt), ...]``. Note: notes/translation_data.md#bible-verse-pairs."""
    a, b = module_verses(src, root), module_verses(tgt, root)
    keys = [key for key in a if key in b]
    if check_lengths and keys:
        keys = _length_checked(keys, a, b)
    if refs:
        return [(key, a[key], b[key]) for key in keys]
    return [(a[key], b[key]) for key in keys]


# Gale and Church's (1993) prior probabilities of the bead kinds: (source, target) sentences.
_PRIOR = {(1, 1): 0.89, (1, 0): 0.0099 / 2, (0, 1): 0.0099 / 2, (2, 1): 0.089 / 2, (1, 2): 0.089 / 2}


def _match_cost(l1: int, l2: int, c: float, s2: float) -> float:
    """-log P(δ) with δ = (l2 - l1 c) / sqrt(l1 s²) (Gale and Church 1993, section 3), l1 taken
    as the mean length (l1 + l2 / c) / 2 as in the paper's program, P(δ) = 2 (1 - Φ(|δ|)).
    A sentence left alone (1-0, 0-1) costs 0 here, so only its prior: see the note's pitfalls."""
    if l1 == 0 or l2 == 0:
        return 0.0
    mean = (l1 + l2 / c) / 2
    δ = (l1 * c - l2) / math.sqrt(s2 * mean)
    return -math.log(max(math.erfc(abs(δ) / math.sqrt(2)), 1e-300))  # 2 (1 - Φ(x)) = erfc(x / √2)


def gale_church(src_lengths: Sequence[int], tgt_lengths: Sequence[int], *, c: float = 1.0,
                s2: float = 6.8) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Gale and Church's (1993) length-based sentence alignment: the monotone sequence of
    beads (1-1, 1-0, 0-1, 2-1, 1-2 sentences) of least total cost ``-log P(δ) - log P(bead)``,
    by dynamic programming. ``c`` is the expected target/source length ratio, ``s2`` the
    variance per unit length (the paper's 1 and 6.8 for characters). Returns the beads as
    ``((i0, i1), (j0, j1))``: source sentences ``i0:i1`` align with target sentences ``j0:j1``."""
    n, m = len(src_lengths), len(tgt_lengths)
    cost = [[math.inf] * (m + 1) for _ in range(n + 1)]
    back: list[list[tuple[int, int]]] = [[(0, 0)] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            for (di, dj), prior in _PRIOR.items():
                if i >= di and j >= dj and cost[i - di][j - dj] < math.inf:
                    l1, l2 = sum(src_lengths[i - di:i]), sum(tgt_lengths[j - dj:j])
                    total = cost[i - di][j - dj] + _match_cost(l1, l2, c, s2) - math.log(prior)
                    if total < cost[i][j]:
                        cost[i][j], back[i][j] = total, (di, dj)
    beads, i, j = [], n, m
    while i or j:
        di, dj = back[i][j]
        beads.append(((i - di, i), (j - dj, j)))
        i, j = i - di, j - dj
    return beads[::-1]


def _length_checked(keys: list, a: dict, b: dict, *, max_cost: float = 6.0) -> list:
    """The keys that length alignment confirms; c and s² are measured on all the pairs."""
    c = sum(len(b[k]) for k in keys) / sum(len(a[k]) for k in keys)
    s2 = sum((len(b[k]) - c * len(a[k])) ** 2 / len(a[k]) for k in keys) / len(keys)
    chapters: dict[tuple[str, int], tuple[list, list]] = defaultdict(lambda: ([], []))
    for side, verses in enumerate((a, b)):
        for key in verses:
            chapters[key[:2]][side].append(key)
    kept = set()
    for ka, kb in chapters.values():
        if ka == kb and all(_match_cost(len(a[k]), len(b[k]), c, s2) < max_cost for k in ka):
            kept.update(ka)  # every pair's lengths agree: no alignment needed
            continue
        for (i0, i1), (j0, j1) in gale_church([len(a[k]) for k in ka], [len(b[k]) for k in kb], c=c, s2=s2):
            if i1 - i0 == 1 and j1 - j0 == 1 and ka[i0] == kb[j0]:
                kept.add(ka[i0])
    return [key for key in keys if key in kept]


def read_pairs_tsv(path: str | os.PathLike, src_col: int = 0, tgt_col: int = 1,
                   *, encoding: str = "utf-8-sig") -> list[Pair]:
    """Pairs from a tab-separated file, one pair a line, columns counted from 0.

    manythings.org's ``eng-spa.txt`` (``English<TAB>Spanish<TAB>attribution``) reads with
    the defaults; Tatoeba's ``sentence pairs`` export (``id<TAB>text<TAB>id<TAB>text``)
    with ``src_col=1, tgt_col=3``. Blank lines are skipped, fields are stripped, no
    quoting is interpreted (a ``"`` is text). Note: notes/translation_data.md#tab-separated-pairs."""
    path = Path(path)
    if src_col < 0 or tgt_col < 0:
        raise ValueError(f"read_pairs_tsv: src_col={src_col}, tgt_col={tgt_col}; columns count from 0")
    if not path.is_file():
        raise FileNotFoundError(f"read_pairs_tsv: no file {path}. Tatoeba pairs can be exported from "
                                f"tatoeba.org/downloads, or taken from manythings.org/anki (eng-spa.txt)")
    need = max(src_col, tgt_col) + 1
    pairs = []
    with open(path, encoding=encoding, newline="") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < need:
                raise DataFormatError(f"{path}, line {number}: {len(fields)} tab-separated column(s), but "
                                      f"src_col={src_col} and tgt_col={tgt_col} need {need}: {line[:80]!r}")
            pairs.append((fields[src_col].strip(), fields[tgt_col].strip()))
    return pairs


def split_pairs(pairs: Sequence[Pair], val_fraction: float = 0.1, test_fraction: float = 0.1,
                seed: int = 0) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """``(train, val, test)``: a permutation drawn from a ``torch.Generator`` seeded with
    ``seed`` gives the first ``round(test_fraction * n)`` pairs to test, the next
    ``round(val_fraction * n)`` to val, the rest to train; each part keeps the input's
    order. Same pairs and seed, same split. Note: notes/translation_data.md#splits."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise ValueError(f"split_pairs: {name}={value}; expected a fraction in [0, 1)")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"split_pairs: val_fraction + test_fraction = {val_fraction + test_fraction}; "
                         f"expected < 1 so that some pairs are left to train on")
    n = len(pairs)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_test, n_val = round(test_fraction * n), round(val_fraction * n)
    parts = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    train, val, test = ([pairs[i] for i in sorted(part)] for part in (parts[2], parts[1], parts[0]))
    return train, val, test


def filter_pairs(pairs: Sequence[Pair], max_len: int, *, min_len: int = 1,
                 length: Callable[[str], int] = len) -> list[Pair]:
    """The pairs whose two sides both have ``min_len <= length(side) <= max_len``.
    ``length`` defaults to characters; pass e.g. ``lambda s: len(tokenizer.encode(s))``
    to count tokens, or ``lambda s: len(s.split())`` to count words."""
    if max_len < min_len:
        raise ValueError(f"filter_pairs: max_len={max_len} < min_len={min_len}")
    return [(s, t) for s, t in pairs if min_len <= length(s) <= max_len and min_len <= length(t) <= max_len]


def bleu(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (Papineni et al. 2002) in [0, 100], computed by sacrebleu's
    ``corpus_bleu`` with its defaults (13a tokenisation, "exp" smoothing of an n-gram order
    with no match, 0 when no unigram matches or when no hypothesis has 4 tokens).

    ``references[i]`` is the reference of ``hypotheses[i]``, or a list of several
    references (each hypothesis the same number). Needs ``pip install sacrebleu``.
    Note: notes/translation_data.md#bleu."""
    try:
        import sacrebleu
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("bleu needs sacrebleu: `pip install sacrebleu` "
                                  "(or `pip install zerotoml[examples]`)") from e
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("bleu: hypotheses and references are lists of sentences, not one string")
    if len(hypotheses) != len(references):
        raise ValueError(f"bleu: {len(hypotheses)} hypotheses but {len(references)} references; "
                         f"expected one reference (or list of references) per hypothesis")
    if not references:
        raise ValueError("bleu: no hypotheses; expected at least one sentence")
    if all(isinstance(r, str) for r in references):
        streams = [list(references)]
    else:
        counts = {len(r) for r in references}
        if len(counts) != 1 or any(isinstance(r, str) for r in references):
            raise ValueError(f"bleu: references mix strings and lists or have {sorted(counts)} "
                             f"references per hypothesis; expected the same number for each")
        streams = [list(stream) for stream in zip(*references)]  # sacrebleu: one stream per reference
    return float(sacrebleu.corpus_bleu(list(hypotheses), streams).score)
