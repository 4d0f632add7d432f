"""Sentence pairs: zerotoml/data/pairs.py (notes/translation_data.md). Verse matching and
the length check on verse tables the tests make up, Gale-Church on hand-worked cases,
tab-separated files the tests write, the seeded split, the filter and BLEU."""

import math
import random

import pytest

from zerotoml.data import DataFormatError
from zerotoml.data import pairs as P
from zerotoml.data.pairs import bible_pairs, bleu, filter_pairs, gale_church, read_pairs_tsv, split_pairs
from zerotoml.data.sword import find_module


def fake_modules(monkeypatch, tables: dict[str, dict]) -> None:
    monkeypatch.setattr(P, "module_verses", lambda name, root=None: tables[name])


def test_bible_pairs_match_keys_in_source_order(monkeypatch):
    en = {("Gen", 1, 1): "In the beginning.", ("Gen", 1, 2): "The earth.", ("Tob", 1, 1): "Tobit.",
          ("John", 1, 1): "The Word."}
    es = {("John", 1, 1): "El Verbo.", ("Gen", 1, 1): "En el principio.", ("Gen", 1, 2): "La tierra."}
    fake_modules(monkeypatch, {"en": en, "es": es})
    assert bible_pairs("en", "es") == [("In the beginning.", "En el principio."), ("The earth.", "La tierra."),
                                       ("The Word.", "El Verbo.")]
    assert bible_pairs("es", "en", refs=True)[0] == (("John", 1, 1), "El Verbo.", "The Word.")


def test_bible_pairs_drop_a_shifted_chapter_tail(monkeypatch):
    # 20 chapters whose target verses are 0.95 times as long, +-10%; in chapter 21 the
    # target inserts a verse before verse 3 and numbers the rest one late, the way a
    # module's own numbering can differ from its versification's.
    rng = random.Random(0)
    lengths = {(c, v): rng.randint(20, 200) for c in range(1, 22) for v in range(1, 11)}
    en = {("Num", c, v): "x" * n for (c, v), n in lengths.items()}
    es = {("Num", c, v): "y" * round(0.95 * n * rng.uniform(0.9, 1.1)) for (c, v), n in lengths.items() if c < 21}
    es |= {("Num", 21, 1): "y" * lengths[21, 1], ("Num", 21, 2): "y" * lengths[21, 2], ("Num", 21, 3): "y" * 90}
    es |= {("Num", 21, v + 1): "y" * lengths[21, v] for v in range(3, 10)}
    fake_modules(monkeypatch, {"en": en, "es": es})
    keys = [key for key, _, _ in bible_pairs("en", "es", refs=True)]
    assert keys == [("Num", c, v) for c in range(1, 21) for v in range(1, 11)] + [("Num", 21, 1), ("Num", 21, 2)]
    assert len(bible_pairs("en", "es", check_lengths=False)) == 210


def test_gale_church_hand_worked_beads():
    assert gale_church([10, 20, 30], [10, 20, 30]) == [((0, 1), (0, 1)), ((1, 2), (1, 2)), ((2, 3), (2, 3))]
    assert gale_church([100, 200, 300], [300, 300]) == [((0, 2), (0, 1)), ((2, 3), (1, 2))]  # 2-1 merge
    assert gale_church([100, 200, 300], [100, 500]) == [((0, 1), (0, 1)), ((1, 3), (1, 2))]
    assert gale_church([80, 100, 120], [500, 80, 100, 120])[0] == ((0, 0), (0, 1))  # 0-1 insertion
    assert gale_church([], [3]) == [((0, 0), (0, 1))] and gale_church([], []) == []


def test_match_cost_is_minus_log_two_sided_normal_tail():
    # δ = (l1 c - l2) / sqrt(s² (l1 + l2 / c) / 2); l1 = 100, l2 = 80, c = 1, s² = 10: δ = 20 / sqrt(900) = 2/3
    assert math.isclose(P._match_cost(100, 80, 1.0, 10.0), -math.log(2 * (1 - 0.7475074624530771)), rel_tol=1e-12)
    assert P._match_cost(100, 0, 1.0, 10.0) == 0.0


def write(path, text: str):
    path.write_bytes(text.encode("utf-8"))
    return path


def test_read_pairs_tsv_manythings_and_tatoeba(tmp_path):
    manythings = write(tmp_path / "eng-spa.txt",
                       "\ufeffGo.\tVe.\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & #4986655\r\n"
                       "\r\n"
                       "\"Hi!\"  \t \u00a1Hola!\tCC-BY 2.0 (France) Attribution: tatoeba.org #538123\n")
    assert read_pairs_tsv(manythings) == [("Go.", "Ve."), ('"Hi!"', "\u00a1Hola!")]
    assert read_pairs_tsv(manythings, src_col=1, tgt_col=0)[0] == ("Ve.", "Go.")
    tatoeba = write(tmp_path / "pairs.tsv", "1276\tLet's try something.\t2481\tProbemos algo.\n")
    assert read_pairs_tsv(tatoeba, src_col=1, tgt_col=3) == [("Let's try something.", "Probemos algo.")]


def test_read_pairs_tsv_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file .*missing.tsv"):
        read_pairs_tsv(tmp_path / "missing.tsv")
    bad = write(tmp_path / "bad.tsv", "Go.\tVe.\tattribution\nRun!\t\u00a1Corre!\tattribution\nOops, no tab\n")
    with pytest.raises(DataFormatError, match=r"bad.tsv, line 3: 1 tab-separated column\(s\).*need 2"):
        read_pairs_tsv(bad)
    with pytest.raises(DataFormatError, match="line 1: 3 .*tgt_col=3 need 4"):
        read_pairs_tsv(bad, tgt_col=3)
    with pytest.raises(ValueError, match="src_col=-1"):
        read_pairs_tsv(bad, src_col=-1)


PAIRS = [(f"s{i}", f"t{i}") for i in range(103)]


def test_split_pairs_is_deterministic_and_a_partition():
    train, val, test = split_pairs(PAIRS, 0.1, 0.2, seed=3)
    assert (len(train), len(val), len(test)) == (72, 10, 21)  # round(10.3) = 10, round(20.6) = 21
    assert sorted(train + val + test) == sorted(PAIRS)
    assert all(part == sorted(part, key=PAIRS.index) for part in (train, val, test))  # input order kept
    assert split_pairs(PAIRS, 0.1, 0.2, seed=3) == (train, val, test)
    assert split_pairs(PAIRS, 0.1, 0.2, seed=4)[2] != test
    assert split_pairs(PAIRS, 0.0, 0.0)[0] == PAIRS


def test_split_pairs_errors():
    with pytest.raises(ValueError, match="val_fraction=1.5"):
        split_pairs(PAIRS, 1.5, 0.1)
    with pytest.raises(ValueError, match="test_fraction=-0.1"):
        split_pairs(PAIRS, 0.1, -0.1)
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction = 1.0"):
        split_pairs(PAIRS, 0.5, 0.5)


def test_filter_pairs():
    pairs = [("a b", "c"), ("", "x"), ("a b c d", "e"), ("long sentence here", "x")]
    assert filter_pairs(pairs, 3) == [("a b", "c")]
    assert filter_pairs(pairs, 3, length=lambda s: len(s.split())) == [("a b", "c"), ("long sentence here", "x")]
    assert filter_pairs(pairs, 7, min_len=0) == pairs[:3]
    with pytest.raises(ValueError, match="max_len=0 < min_len=1"):
        filter_pairs(pairs, 0)


def test_bleu_hand_worked():
    pytest.importorskip("sacrebleu")
    assert math.isclose(bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 100.0)
    assert bleu(["dog barks loudly today"], ["the cat sat on the mat"]) == 0.0
    # n-gram precisions 5/6, 3/5, 2/4, 1/3, equal lengths (brevity penalty 1):
    # BLEU = 100 (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = 100 / 12 ** (1/4)
    assert math.isclose(bleu(["the cat sat on the mat"], ["the cat sat on a mat"]), 100 / 12 ** 0.25, rel_tol=1e-9)
    # several references per hypothesis: the best match counts
    assert math.isclose(bleu(["the cat sat on the mat"], [["a dog", "the cat sat on the mat"]]), 100.0)


def test_bleu_errors(monkeypatch):
    pytest.importorskip("sacrebleu")
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="not one string"):
        bleu("a b", "a b")
    with pytest.raises(ValueError, match="same number"):
        bleu(["a", "b"], [["a"], ["b", "c"]])
    monkeypatch.setitem(__import__("sys").modules, "sacrebleu", None)
    with pytest.raises(ModuleNotFoundError, match="pip install sacrebleu"):
        bleu(["a"], ["a"])


def debian_modules_present() -> bool:
    try:
        find_module("web"), find_module("sparv")
    except FileNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not debian_modules_present(), reason="needs Debian's sword-text-web and sword-text-sparv")
def test_debian_bible_pairs():
    pairs = bible_pairs(refs=True)
    assert 30000 < len(pairs) < 31102
    first = pairs[0]
    assert first[0] == ("Gen", 1, 1) and first[1].startswith("In the beginning") and first[2].startswith("EN el")
    refs = {key for key, _, _ in pairs}
    assert ("Num", 13, 2) not in refs  # RV 1909 numbers Numbers 13 one verse late
    assert ("Tob", 1, 1) not in refs  # the deuterocanon is in the WEB only
