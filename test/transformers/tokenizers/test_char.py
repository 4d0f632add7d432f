"""CharTokenizer: vocabulary, round trips, special tokens, save/load, errors."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from zerotoml.transformers.tokenizers import CharTokenizer


def test_vocabulary_is_sorted_distinct_characters():
    tok = CharTokenizer.train("hello world")
    assert tok.chars == (" ", "d", "e", "h", "l", "o", "r", "w")
    assert tok.vocab_size == 8
    assert tok.encode("hello") == [3, 2, 4, 4, 5]
    assert tok.decode([3, 2, 4, 4, 5]) == "hello"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_round_trip_on_its_own_text(text):
    tok = CharTokenizer.train(text)
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text
    assert tok.decode(tok.encode(text, as_tensor=True)) == text


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1), st.text())
def test_round_trip_with_unk_maps_only_unknown_characters(train, text):
    tok = CharTokenizer.train(train, unk="<unk>")
    decoded = tok.decode(tok.encode(text, allow_special=False))
    expected = "".join(c if c in tok.chars else "<unk>" for c in text)
    assert decoded == expected


def test_tensor_output():
    tok = CharTokenizer.train("abc")
    ids = tok.encode("cab", as_tensor=True)
    assert ids.dtype == torch.long and ids.tolist() == [2, 0, 1]


def test_special_tokens_follow_the_characters():
    tok = CharTokenizer.train("ab<bos>ba", special_tokens=("<pad>", "<bos>"))
    assert tok.chars == ("a", "b")  # the special token's characters are not counted
    assert tok.token_to_id("<pad>") == 2 and tok.token_to_id("<bos>") == 3
    assert tok.encode("<bos>ab<pad>") == [3, 0, 1, 2]
    assert tok.decode([3, 0, 1, 2]) == "<bos>ab<pad>"


def test_unknown_character_names_it_and_its_position():
    tok = CharTokenizer.train("abc")
    with pytest.raises(ValueError, match=r"unknown character 'é' \(U\+00E9\) at position 2"):
        tok.encode("abé")


def test_unknown_id_names_it_and_its_position():
    tok = CharTokenizer.train("abc")
    with pytest.raises(ValueError, match=r"unknown id 7 at position 1; expected 0 <= id < vocab_size = 3"):
        tok.decode([0, 7])
    with pytest.raises(ValueError, match=r"unknown id -1 at position 0"):
        tok.decode(torch.tensor([-1]))
    with pytest.raises(ValueError, match=r"ids: expected a 1-D integer tensor"):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))


def test_unk_option():
    tok = CharTokenizer.train("abc", unk="<unk>")
    assert tok.encode("aéb") == [0, 3, 1]
    assert tok.decode(tok.encode("aéb")) == "a<unk>b"


def test_bad_vocabulary_is_rejected():
    with pytest.raises(ValueError, match="chars: expected sorted distinct characters"):
        CharTokenizer(("b", "a"))
    with pytest.raises(ValueError, match="chars: every entry must be one character, got 'ab'"):
        CharTokenizer(("ab",))


def test_save_load(tmp_path):
    tok = CharTokenizer.train("To be, or not to be: that is the question. Ça va? 日本",
                              special_tokens=("<eos>",), unk="<unk>")
    tok.save(tmp_path / "char.json")
    back = CharTokenizer.load(tmp_path / "char.json")
    assert back == tok
    text = "question<eos>Ça"
    assert back.encode(text) == tok.encode(text)


def test_load_rejects_another_kind(tmp_path):
    (tmp_path / "x.json").write_text('{"type": "byte-level-bpe"}')
    with pytest.raises(ValueError, match="expected a char tokenizer"):
        CharTokenizer.load(tmp_path / "x.json")
