"""Pairing after a sandbox refresh: link values count only when they point at each other; otherwise one record and
one person per e-mail address; anything ambiguous or taken pairs nothing."""

from __future__ import annotations

import pytest

from sync.relink import pair_persons

CASES = [
    pytest.param({"r1": "5"}, {"r1": ["5"]}, {}, {}, set(), ({"r1": "5"}, 1), id="proven-both-ways"),
    pytest.param({"r1": "5"}, {}, {"a@x": ["r1"]}, {"a@x": ["7"]}, set(), ({"r1": "7"}, 0), id="stale-value-ignored"),
    pytest.param({"r1": ""}, {"r1": ["5"]}, {"a@x": ["r1"]}, {"a@x": ["6"]}, set(), ({"r1": "6"}, 0), id="one-way"),
    pytest.param({"r1": ""}, {}, {"a@x": ["r1", "r2"]}, {"a@x": ["6"]}, set(), ({}, 0), id="two-records-one-address"),
    pytest.param({"r1": ""}, {}, {"a@x": ["r1"]}, {"a@x": ["6", "7"]}, set(), ({}, 0), id="two-persons-one-address"),
    pytest.param({"r1": ""}, {}, {"a@x": ["r1"]}, {"a@x": ["6"]}, {"6"}, ({}, 0), id="person-taken-elsewhere"),
    pytest.param(
        {"r1": "5", "r2": ""},
        {"r1": ["5"]},
        {"a@x": ["r1", "r2"]},
        {"a@x": ["5", "8"]},
        set(),
        ({"r1": "5", "r2": "8"}, 1),
        id="proven-first-then-the-rest-of-the-address",
    ),
    pytest.param({"r1": "5"}, {"r1": ["5"]}, {}, {}, {"5"}, ({}, 0), id="proven-but-taken"),
]


@pytest.mark.parametrize(("links", "by_key", "emails", "by_email", "claimed", "expected"), CASES)
def test_pairs(
    links: dict[str, str],
    by_key: dict[str, list[str]],
    emails: dict[str, list[str]],
    by_email: dict[str, list[str]],
    claimed: set[str],
    expected: tuple[dict[str, str], int],
) -> None:
    taken = set(claimed)
    assert pair_persons(links, by_key, emails, by_email, taken) == expected
    assert taken == claimed | set(expected[0].values())
