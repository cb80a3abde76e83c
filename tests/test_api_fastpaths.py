"""The API's fast paths give exactly what the reference implementations give.

`auth.fast_payload` must equal `signature.payload` (or a client's signature would be refused), and
the plain-form shortcut of `api.request_params` must decode like `params.parse_params`.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from yarl import URL

from node.web.api import request_params
from node.web.auth import fast_payload
from node.web.params import Params, parse_params
from node.web.signature import payload, to_query

KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC_.-[]0123456789 %+é", min_size=1, max_size=8)
VALUES = st.text(max_size=12) | st.integers(0, 10**12).map(str)
NESTED = st.lists(st.dictionaries(st.sampled_from(["side", "price", "volume"]), st.text(max_size=5), min_size=1),
                  max_size=3)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, VALUES | NESTED, max_size=6), st.sampled_from(["GET", "POST"]))
def test_fast_payload_matches_the_reference(params: dict[str, Any], verb: str) -> None:
    assert fast_payload(verb, "/api/v2/orders", params) == payload(verb, "/api/v2/orders", params)


def test_fast_payload_on_the_published_vector() -> None:
    p = {"access_key": "xxx", "foo": "bar", "tonce": "123456789", "signature": "s"}
    assert fast_payload("GET", "/api/v2/markets", p) == "GET|/api/v2/markets|access_key=xxx&foo=bar&tonce=123456789"
    # keys below '=' in ASCII sort like Ruby's escaped pieces: "a-b=" before "a="
    assert fast_payload("GET", "/x", {"a": "1", "a-b": "2"}) == "GET|/x|a-b=2&a=1"


class FakeRequest:
    """Just what request_params reads of an aiohttp request."""

    def __init__(self, query: bytes, body: bytes, content_type: str) -> None:
        self.rel_url = URL("/api/v2/orders?" + query.decode("latin-1"), encoded=True)
        self._body = body
        self.content_type = content_type
        self.headers = CIMultiDict({"Content-Type": content_type})

    @property
    def can_read_body(self) -> bool:
        return bool(self._body)

    async def read(self) -> bytes:
        return self._body


FORM_TEXT = st.text(alphabet="ab=&_.-09xyz[]%+", max_size=30)


@settings(max_examples=400, deadline=None)
@given(FORM_TEXT, FORM_TEXT)
async def test_plain_forms_decode_like_parse_params(query: str, body: str) -> None:
    await agrees_with_parse_params(query, body)


async def agrees_with_parse_params(query: str, body: str) -> None:
    """`request_params` gives what the reference gives: the same params, or the same refusal."""
    ctype = "application/x-www-form-urlencoded"
    try:
        expected: Params | Exception = parse_params(query.encode(), body.encode(), ctype if body else "")
    except Exception as e:  # the reference refuses: so must the API
        expected = e
    try:
        got: Params | Exception = await request_params(FakeRequest(query.encode(), body.encode(), ctype))  # type: ignore[arg-type]
    except Exception as e:
        got = e
    if isinstance(expected, Exception):
        assert isinstance(got, Exception) and type(got) is type(expected) and str(got) == str(expected)
    else:
        assert isinstance(got, Params) and got.to_dict() == expected.to_dict()


async def test_a_signed_order_body_takes_the_fast_path() -> None:
    body = to_query({"market": "btcusd", "side": "buy", "volume": "0.1", "price": "3000", "access_key": "a" * 40,
                     "tonce": "1", "signature": "f" * 64}).encode()
    got = await request_params(FakeRequest(b"", body, "application/x-www-form-urlencoded"))  # type: ignore[arg-type]
    assert got.to_dict() == parse_params(b"", body, "application/x-www-form-urlencoded").to_dict()


@pytest.mark.parametrize(("query", "body"), [
    ("", "n" * 101 + "=1"),            # a name longer than the edge allows, in a body
    ("n" * 101 + "=1", ""),            # … and in a query
    ("", "market=" + "x" * 5000),      # a value longer than the edge allows
    ("market=" + "x" * 5000, ""),
    ("", "body=" + "x" * 5000),        # the few long fields are allowed more: still the reference's answer
])
async def test_plain_forms_keep_the_edges_length_limits(query: str, body: str) -> None:
    """A plain form too long for the shortcut's assumptions gets the reference's answer, refusal or not."""
    await agrees_with_parse_params(query, body)
