"""The facade's quoteaddr(): smtplib's own, with a fast path for a plain address that
must give exactly what smtplib's gives, for every string."""

from __future__ import annotations

import smtplib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpretry.compat import _PLAIN_ADDRESS, _quoteaddr

# Pieces of addresses, and of what is not one: atext, specials, white space, quotes,
# display names, non-ASCII.
pieces = st.sampled_from([
    "a", "Z9", "-", "_", "'", "+", "=", "?", "!", "#", "{", "~", "/", ".", "..", "@", "@@",
    " ", "\t", "<", ">", '"', "(", ")", ",", ";", ":", "[", "]", "\\", "é", "\r\n", "=?utf-8?q?x?=",
])


@given(st.lists(pieces, max_size=12).map("".join))
def test_the_fast_path_gives_what_smtplib_gives(text: str) -> None:
    assert _quoteaddr(text) == smtplib.quoteaddr(text)


@pytest.mark.parametrize("address", [
    "user@example.org", "first.last+tag@sub.example.co.uk", "o'brien@example.ie",
    "a!#$%&'*+/=?^_`{|}~-b@x-y.example", "UPPER@EXAMPLE.ORG",
])
def test_plain_addresses_take_the_fast_path_and_agree(address: str) -> None:
    assert _PLAIN_ADDRESS.fullmatch(address)
    assert _quoteaddr(address) == smtplib.quoteaddr(address) == f"<{address}>"


@pytest.mark.parametrize("address", [
    "Private Person <alice@example.org>", "<alice@example.org>", "a..b@example.org",
    ".a@example.org", "a@example.org.", '"quoted local"@example.org', "a@[127.0.0.1]",
    "a@example.org (comment)", "é@example.org", "<>", "", "no-at-sign",
])
def test_anything_else_goes_through_smtplib(address: str) -> None:
    assert not _PLAIN_ADDRESS.fullmatch(address)
    assert _quoteaddr(address) == smtplib.quoteaddr(address)
