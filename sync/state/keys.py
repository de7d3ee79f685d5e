"""Table Storage key encoding.

PartitionKey and RowKey may not hold `/ \\ # ?` or control characters, and Azurite answers a `/` with a 500 instead of
a clean rejection. Record ids and e-mail addresses come from outside, so every key is built by `encode_key`:
ASCII letters, digits and `-_.@+` pass through, every other character becomes `~` plus the hex of its UTF-8 bytes.
The result is injective (distinct inputs give distinct keys) and keeps ordinary ids and e-mails readable.
A key stays well under the 1 KiB limit: an encoded value longer than MAX_KEY_LENGTH is replaced by a SHA-256 digest;
every repository also stores the original value as a property, so nothing depends on decoding a key.
"""

from __future__ import annotations

import hashlib
import re

MAX_KEY_LENGTH = 512
_PLAIN_CHARS = r"[A-Za-z0-9\-_.@+]"
_PLAIN = re.compile(_PLAIN_CHARS)
_ALL_PLAIN = re.compile(_PLAIN_CHARS + "+")
_HASHED_PREFIX = "~h~"


def encode_key(value: str) -> str:
    """A PartitionKey/RowKey-safe, injective encoding of `value`."""
    if not isinstance(value, str) or value == "":
        raise ValueError(f"a table key must be a non-empty string, got {value!r}")
    if len(value) <= MAX_KEY_LENGTH and _ALL_PLAIN.fullmatch(value):  # ids and most keys: nothing to encode
        return value
    encoded = "".join(ch if _PLAIN.fullmatch(ch) else "".join(f"~{b:02X}" for b in ch.encode()) for ch in value)
    if len(encoded) > MAX_KEY_LENGTH:
        return _HASHED_PREFIX + hashlib.sha256(value.encode()).hexdigest()
    return encoded


def decode_key(key: str) -> str:
    """The inverse of `encode_key` (not available for hashed keys: read the stored original instead)."""
    if key.startswith(_HASHED_PREFIX):
        raise ValueError("hashed keys cannot be decoded; read the original value from the entity")
    out = bytearray()
    i = 0
    while i < len(key):
        if key[i] == "~":
            out.append(int(key[i + 1 : i + 3], 16))
            i += 3
        else:
            out.extend(key[i].encode())
            i += 1
    return out.decode()
