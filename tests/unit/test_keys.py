from __future__ import annotations

import re

import pytest

from sync.state.keys import MAX_KEY_LENGTH, decode_key, encode_key

FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


@pytest.mark.parametrize(
    "value",
    ["plain-id_1.2@x.com", "a/b", "a\\b", "#", "?", "\x00\x1f\x7f\x9f", "~", "~41", "ü", "😀", "o'brien", "%2F", " "],
)
def test_encoded_keys_are_table_safe_and_reversible(value: str) -> None:
    key = encode_key(value)
    assert not FORBIDDEN.search(key)
    assert key.isascii()
    assert decode_key(key) == value


def test_encoding_is_injective_across_lookalikes() -> None:
    values = ["a/b", "a~2Fb", "a%2Fb", "A/b", "a/B"]
    assert len({encode_key(v) for v in values}) == len(values)


def test_ordinary_ids_stay_readable() -> None:
    assert encode_key("0f8fad5b-d9cb-469f-a165-70867728950e") == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert encode_key("Jane.Doe+tag@example.com") == "Jane.Doe+tag@example.com"


def test_very_long_values_are_hashed_under_the_limit() -> None:
    long_value = "ü" * 400
    key = encode_key(long_value)
    assert len(key) <= MAX_KEY_LENGTH
    assert encode_key(long_value) == key
    assert encode_key(long_value + "x") != key
    with pytest.raises(ValueError, match="hashed"):
        decode_key(key)


@pytest.mark.parametrize("bad", ["", None, 5])
def test_empty_or_non_string_is_rejected(bad: object) -> None:
    with pytest.raises(ValueError):
        encode_key(bad)  # type: ignore[arg-type]
