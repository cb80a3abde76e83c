"""Peatio-compatible request params and signatures (node.web.params, node.web.signature).

Read top to bottom, these tests are the specification: the official Peatio vectors first, then how
params are decoded from the query string and body, then the errors, the tonce window and the keys.
"""

from __future__ import annotations

import json
import random
import re
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.web.params import MAX_BODY_BYTES, MAX_PARAMS, ParamError, Params, ParamValue, parse_params
from node.web.signature import (
    TonceOutOfWindow,
    canonical_query,
    check_tonce,
    generate_challenge,
    generate_key,
    payload,
    sign,
    to_query,
    verify_signature,
    verify_ws_answer,
    ws_answer,
)

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def form(query: str = "", body: str = "") -> Params:
    """Parse like a request with a form-encoded body."""
    return parse_params(query, body.encode(), FORM)


# ============================================================================ Peatio's published vectors


def test_vector_markets() -> None:
    """A signed GET to a public endpoint: the signature param itself is not signed."""
    params = form("access_key=xxx&foo=bar&tonce=123456789&signature=whatever")
    assert (
        payload("GET", "/api/v2/markets", params)
        == "GET|/api/v2/markets|access_key=xxx&foo=bar&tonce=123456789"
    )
    assert (
        sign("yyy", payload("GET", "/api/v2/markets", params))
        == "e324059be4491ed8e528aa7b8735af1e96547fbec96db962d51feb7bf1b64dee"
    )


def test_vector_orders() -> None:
    """Keys are sorted whatever order the client sent them in."""
    params = form("tonce=1234567&access_key=accesskey")
    message = payload("GET", "/api/v2/orders", params)
    assert message == "GET|/api/v2/orders|access_key=accesskey&tonce=1234567"
    assert sign("secretkey", message) == "1b89e3a984c25eacb7439ae644be253b55975e35529ee665966e3b9d8e3dcb2f"


MULTI_PAYLOAD = (
    "POST|/api/v2/orders/multi|access_key=accesskey&market=btccny"
    "&orders[][price]=2955.0&orders[][side]=buy&orders[][volume]=0.15"
    "&orders[][price]=2956&orders[][side]=sell&orders[][volume]=0.16&tonce=1234567"
)
MULTI_SIGNATURE = "8d4db74fb78fb230342f4f0b64cce4ee6bd1ddf0e81f09d42f6c07bd8d55c552"
ESCAPED_ORDERS = (
    "orders%5B%5D%5Bprice%5D=2955.0&orders%5B%5D%5Bside%5D=buy&orders%5B%5D%5Bvolume%5D=0.15"
    "&orders%5B%5D%5Bprice%5D=2956&orders%5B%5D%5Bside%5D=sell&orders%5B%5D%5Bvolume%5D=0.16"
)


@pytest.mark.parametrize(
    ("query", "body"),
    [
        pytest.param(
            "", f"access_key=accesskey&tonce=1234567&market=btccny&{ESCAPED_ORDERS}", id="all-in-body"
        ),
        pytest.param(
            "access_key=accesskey&tonce=1234567", f"market=btccny&{ESCAPED_ORDERS}", id="auth-in-query"
        ),
        pytest.param(
            f"market=btccny&{ESCAPED_ORDERS}", "tonce=1234567&access_key=accesskey", id="orders-in-query"
        ),
        pytest.param(
            f"{ESCAPED_ORDERS}&market=btccny&access_key=accesskey&tonce=1234567", "", id="all-in-query"
        ),
    ],
)
def test_vector_orders_multi_from_escaped_form(query: str, body: str) -> None:
    """The escaped form body decodes into two orders and re-canonicalises to the signed payload."""
    params = form(query, body + f"&signature={MULTI_SIGNATURE}")
    assert params.get_dicts("orders") == [
        {"price": "2955.0", "side": "buy", "volume": "0.15"},
        {"price": "2956", "side": "sell", "volume": "0.16"},
    ]
    assert payload("POST", "/api/v2/orders/multi", params) == MULTI_PAYLOAD
    assert sign("secretkey", MULTI_PAYLOAD) == MULTI_SIGNATURE
    assert verify_signature("secretkey", payload("POST", "/api/v2/orders/multi", params), params["signature"])


def test_vector_orders_multi_any_key_order_within_an_order() -> None:
    """Each order's keys are sorted; only the order of the orders themselves is significant."""
    body = (
        "access_key=accesskey&tonce=1234567&market=btccny"
        "&orders[][side]=buy&orders[][volume]=0.15&orders[][price]=2955.0"
        "&orders[][volume]=0.16&orders[][price]=2956&orders[][side]=sell"
    )
    assert payload("POST", "/api/v2/orders/multi", form(body=body)) == MULTI_PAYLOAD


def test_vector_orders_multi_as_json_body() -> None:
    """A JSON body signs exactly like the equivalent form; numbers keep their literal text."""
    body = json.dumps(
        {
            "access_key": "accesskey",
            "tonce": 1234567,
            "market": "btccny",
            "orders": [
                {"side": "buy", "volume": "0.15", "price": 2955.0},
                {"side": "sell", "volume": 0.16, "price": 2956},
            ],
        }
    ).encode()
    params = parse_params("", body, "application/json; charset=utf-8")
    assert params["tonce"] == "1234567"
    assert payload("POST", "/api/v2/orders/multi", params) == MULTI_PAYLOAD


def test_websocket_vector() -> None:
    """Websocket auth answers the challenge with HMAC(secret, access_key + challenge)."""
    expected = "52ca0e5beab532532c62155e78d81c7dc8ad6d6f744cf3797668cf52dd2f9a41"
    assert ws_answer("ghi", "abc", "def") == expected
    assert verify_ws_answer("ghi", "abc", "def", expected)
    assert not verify_ws_answer("ghi", "abc", "deg", expected)
    assert not verify_ws_answer("ghi", "abc", "def", expected.upper())
    assert len(generate_challenge()) >= 40


@pytest.mark.parametrize(
    "candidate",
    ["", "e324059b", "E324059BE4491ED8E528AA7B8735AF1E96547FBEC96DB962D51FEB7BF1B64DEE", "é" * 64, None],
)
def test_verify_signature_refuses_anything_but_the_exact_lowercase_hex(candidate: str) -> None:
    message = "GET|/api/v2/markets|access_key=xxx&foo=bar&tonce=123456789"
    assert verify_signature(
        "yyy", message, "e324059be4491ed8e528aa7b8735af1e96547fbec96db962d51feb7bf1b64dee"
    )
    assert not verify_signature("yyy", message, candidate)


# ====================================================================================== canonical query


def test_path_is_signed_as_sent() -> None:
    """A client that calls /api/v2/orders.json signs that path; the `format` param is not signed."""
    params = form("access_key=a&tonce=1&format=json")
    assert payload("get", "/api/v2/orders.json", params) == "GET|/api/v2/orders.json|access_key=a&tonce=1"


def test_values_are_not_escaped_and_spaces_are_plus() -> None:
    """Peatio un-escaped the query it signed: only `+` stands for a space (and for itself)."""
    params = form("note=a+b%2Bc%26d%3De%25f&city=%E5%8C%97%E4%BA%AC")
    assert params["note"] == "a b+c&d=e%f"
    assert canonical_query(params) == "city=北京&note=a+b+c&d=e%f"


def test_plain_arrays_and_hashes() -> None:
    """`ids[]` is a list in order, `a[b]` a hash whose keys are sorted."""
    params = form("ids[]=2&ids[]=1&a[z]=1&a[b]=2&a[c][d]=3")
    assert params["ids"] == ["2", "1"]
    assert params["a"] == {"z": "1", "b": "2", "c": {"d": "3"}}
    assert canonical_query(params) == "a[b]=2&a[c][d]=3&a[z]=1&ids[]=2&ids[]=1"


def test_empty_arrays_are_left_out_and_python_scalars_render_like_ruby() -> None:
    params = {"tonce": 5, "empty": [], "flag": True, "off": False, "nothing": None, "h": {}}
    assert canonical_query(params) == "flag=true&nothing=&off=false&tonce=5"


def test_sort_is_on_escaped_pieces_like_ruby() -> None:
    """Ruby sorted `k=v` pieces *after* escaping: `a-b=…` < `a1=…` < `a=…` (`-`, `1` < `=`)."""
    assert canonical_query({"a": "1", "a1": "2", "a-b": "3", "b": "4"}) == "a-b=3&a1=2&a=1&b=4"
    # Ruby 2.1 escaped `~` (0x7E) as %7E, which sorts before `_` (0x5F).
    assert canonical_query({"k_": "1", "k~": "2"}) == "k~=2&k_=1"


def test_to_query_is_a_form_body_rack_decodes_back() -> None:
    params = form(body=f"market=btccny&{ESCAPED_ORDERS}&x=a+b%26")
    assert to_query(params).startswith("market=btccny&orders%5B%5D%5Bprice%5D=2955.0&")
    assert form(body=to_query(params)) == params


# ============================================================================ query string + body merge


@pytest.mark.parametrize("verb", ["GET", "POST", "DELETE"])
def test_query_and_body_are_merged_for_every_verb(verb: str) -> None:
    """yunbi sends GET params in a body, other clients POST params in the query: both count."""
    params = form("market=btcusd&limit=5", "access_key=ak&tonce=9")
    assert dict(params) == {"market": "btcusd", "limit": "5", "access_key": "ak", "tonce": "9"}
    assert (
        payload(verb, "/api/v2/trades", params)
        == f"{verb}|/api/v2/trades|access_key=ak&limit=5&market=btcusd&tonce=9"
    )


def test_body_overrides_query_like_rack() -> None:
    """Rack's `GET.merge(POST)`: the body wins on a top-level key, and replaces (not appends) arrays."""
    params = form("market=btcusd&ids[]=1&ids[]=2", "market=ltcbtc&ids[]=3")
    assert params["market"] == "ltcbtc"
    assert params["ids"] == ["3"]


def test_repeated_plain_key_last_wins() -> None:
    assert form("side=buy&side=sell")["side"] == "sell"


def test_new_array_element_starts_when_a_sub_key_repeats() -> None:
    """Rack's rule: an element missing a key takes the next one given, so keep every element complete."""
    params = form("o[][side]=buy&o[][price]=1&o[][side]=sell&o[][volume]=2&o[][price]=3&o[][volume]=4")
    assert params["o"] == [
        {"side": "buy", "price": "1"},
        {"side": "sell", "volume": "2", "price": "3"},
        {"volume": "4"},
    ]


def test_nested_hash_inside_array_elements() -> None:
    params = form("o[][a][x]=1&o[][a][y]=2&o[][a][x]=3")
    assert params["o"] == [{"a": {"x": "1", "y": "2"}}, {"a": {"x": "3"}}]
    assert canonical_query(params) == "o[][a][x]=1&o[][a][y]=2&o[][a][x]=3"


def test_odd_but_legal_forms_decode_like_rack() -> None:
    """No `=` gives an empty value; empty pairs and nameless pairs are ignored."""
    params = form("flag&&=orphan&[]=x&a=1&")
    assert dict(params) == {"flag": "", "a": "1"}
    assert canonical_query(params) == "a=1&flag="


def test_empty_body_ignores_content_type_and_untyped_body_is_a_form() -> None:
    assert dict(parse_params("a=1", b"", "application/octet-stream")) == {"a": "1"}
    assert dict(parse_params("a=1", b"b=2", "")) == {"a": "1", "b": "2"}


def test_json_values_become_form_strings() -> None:
    body = b'{"a": 1.50, "b": true, "c": null, "d": [1, 2], "e": {"f": -0}, "g": "x y"}'
    params = parse_params("a=0&z=1", body, JSON)
    assert dict(params) == {
        "a": "1.50",
        "b": "true",
        "c": "",
        "d": ["1", "2"],
        "e": {"f": "-0"},
        "g": "x y",
        "z": "1",
    }


# ============================================================================================== helpers


def test_get_str() -> None:
    params = form("market=btcusd&ids[]=1&empty=&long=" + "x" * 300)
    assert params.get_str("market", required=True) == "btcusd"
    assert params.get_str("absent") is None
    assert params.get_str("empty") == ""
    assert params.get_str("long", max_len=None) == "x" * 300
    with pytest.raises(ParamError, match="^absent is missing$"):
        params.get_str("absent", required=True)
    with pytest.raises(ParamError, match="^empty is empty$"):
        params.get_str("empty", required=True)
    with pytest.raises(ParamError, match="^ids is invalid$"):
        params.get_str("ids")
    with pytest.raises(ParamError, match="too long") as info:
        params.get_str("long")
    assert info.value.field == "long"


def test_get_int_uses_peatio_range_message() -> None:
    params = form("limit=0&page=2&bad=1e3&neg=-1")
    assert params.get_int("page", default=1) == 2
    assert params.get_int("missing", default=100) == 100
    with pytest.raises(ParamError, match=r"^limit must be in range: 1\.\.1000$") as info:
        params.get_int("limit", min_value=1, max_value=1000)
    assert (info.value.field, info.value.code) == ("limit", 1001)
    assert info.value.to_dict() == {"error": {"code": 1001, "message": "limit must be in range: 1..1000"}}
    with pytest.raises(ParamError, match="^bad is invalid$"):
        params.get_int("bad")
    with pytest.raises(ParamError, match="neg must be greater than or equal to 0"):
        params.get_int("neg", min_value=0)


def test_get_list_and_get_dicts() -> None:
    params = form("ids[]=1&ids[]=2&o[][side]=buy&deep[][a][b]=1&market=x")
    assert params.get_list("ids") == ["1", "2"]
    assert params.get_list("none") == []
    assert params.get_dicts("o") == [{"side": "buy"}]
    with pytest.raises(ParamError, match="market is invalid"):
        params.get_list("market")
    with pytest.raises(ParamError, match="ids is invalid"):
        params.get_dicts("ids")
    with pytest.raises(ParamError, match=re.escape("deep[][a] is invalid")):
        params.get_dicts("deep")
    with pytest.raises(ParamError, match="too many elements"):
        params.get_list("ids", max_items=1)
    with pytest.raises(ParamError, match="orders is missing"):
        params.get_dicts("orders", required=True)


# =============================================================================================== errors


@pytest.mark.parametrize(
    ("query", "body", "field", "message"),
    [
        ("price=1%2", "", "price", "price has malformed percent-encoding"),
        ("price=%zz", "", "price", "price has malformed percent-encoding"),
        ("pri%g0ce=1", "", "pri%g0ce", "pri%g0ce has malformed percent-encoding"),
        ("", "side=%FF%FE", "side", "side is not valid UTF-8"),
        ("", "%C3=1", "%C3", "%C3 is not valid UTF-8"),
        ("ids=1&ids[]=2", "", "ids[]", "ids[] is used both as a scalar and as an array of scalars"),
        ("ids[]=1&ids=2", "", "ids", "ids is used both as an array and as a scalar"),
        ("a[b]=1&a=2", "", "a", "a is used both as a hash and as a scalar"),
        ("a=1&a[b]=2", "", "a[b]", "a[b] is used both as a scalar and as a hash"),
        ("o[][x]=1&o[]=2", "", "o[]", "o[] is used both as a hash and as an array of scalars"),
        ("o[]=1&o[][x]=2", "", "o[][x]", "o[][x] is used both as a scalar and as an array of hashes"),
        ("ids[]=1", "ids=2", "ids", "ids is used both as an array and as a scalar"),
        ("o[][]=1", "", "o[][]", "o[][] is not a valid parameter name"),
        ("a" + "[b]" * 9 + "=1", "", "a" + "[b]" * 9, "is nested too deeply"),
    ],
)
def test_malformed_form_input_names_the_param(query: str, body: str, field: str, message: str) -> None:
    with pytest.raises(ParamError, match=re.escape(message)) as info:
        form(query, body)
    assert info.value.field == field
    assert (info.value.code, info.value.status) == (1001, 400)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"[1, 2]", JSON, "JSON body must be an object"),
        (b'{"a": ', JSON, "JSON body is malformed"),
        (b'{"a": NaN}', JSON, "JSON body is malformed"),
        (b'{"a": "\xff"}', JSON, "JSON body is not valid UTF-8"),
        (b'{"a": [[1]]}', JSON, "a is an array of arrays"),
        (b'{"a": [1, {"b": 2}]}', JSON, "a mixes scalars and hashes"),
        (b"a=1", "multipart/form-data; boundary=x", "unsupported content type 'multipart/form-data'"),
        (b"a=1", "text/plain", "unsupported content type 'text/plain'"),
    ],
)
def test_malformed_bodies(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(ParamError, match=re.escape(message)):
        parse_params("", body, content_type)


def test_limits_on_param_count_and_body_size() -> None:
    """At most 1000 params (query and body together) and a 64 KiB body."""
    at_limit = "&".join(f"k{i}=v" for i in range(MAX_PARAMS))
    assert len(form(at_limit)) == MAX_PARAMS
    with pytest.raises(ParamError, match="too many parameters") as info:
        form(at_limit + "&one=more")
    assert info.value.field == "params"
    with pytest.raises(ParamError, match="too many parameters"):
        form("extra=1", at_limit)
    with pytest.raises(ParamError, match="too many parameters"):
        parse_params("", json.dumps({"a": list(range(MAX_PARAMS + 1))}).encode(), JSON)

    value = "x" * 4000  # a value may be at most 4096 characters; a body at most MAX_BODY_BYTES
    params = [f"k{i}={value}" for i in range(MAX_BODY_BYTES // 4008)]
    big = "&".join(params).encode()
    big += b"&z=" + b"y" * (MAX_BODY_BYTES - len(big) - 3)
    assert len(big) == MAX_BODY_BYTES
    assert parse_params("", big, FORM)["k0"] == value
    with pytest.raises(ParamError, match="request body too large") as info:
        parse_params("", big + b"x", FORM)
    assert info.value.field == "body"


# ========================================================================================== tonce window

NOW = 1_400_000_000_123


@pytest.mark.parametrize("offset", [0, 1, -1, 30_000, -30_000])
def test_tonce_within_30s_either_way_is_accepted(offset: int) -> None:
    """Peatio: rejected only if tonce < now - 30000 or tonce > now + 30000 (the edges pass)."""
    assert check_tonce(str(NOW + offset), NOW) == NOW + offset


@pytest.mark.parametrize("offset", [30_001, -30_001, 10**9])
def test_tonce_outside_the_window_is_2007_with_server_time(offset: int) -> None:
    with pytest.raises(TonceOutOfWindow) as info:
        check_tonce(str(NOW + offset), NOW)
    error = info.value
    assert (error.code, error.status, error.server_time_ms, error.tonce) == (2007, 401, NOW, NOW + offset)
    assert str(error) == f"The tonce {NOW + offset} is invalid, current timestamp is {NOW}."
    assert error.to_dict() == {"error": {"code": 2007, "message": str(error)}}
    # Bots parse this very sentence to fix their clocks: word 2 is the tonce, the last is the server time.
    assert int(error.message.split()[2]) == NOW + offset
    assert int(error.message.split()[-1].rstrip(".")) == NOW


def test_tonce_in_seconds_instead_of_ms_is_out_of_window() -> None:
    with pytest.raises(TonceOutOfWindow):
        check_tonce(str(NOW // 1000), NOW)


def test_tonce_window_is_configurable() -> None:
    assert check_tonce(str(NOW + 5_000), NOW, window_ms=5_000) == NOW + 5_000
    with pytest.raises(TonceOutOfWindow):
        check_tonce(str(NOW + 5_001), NOW, window_ms=5_000)


@pytest.mark.parametrize(
    "garbage",
    ["", " 1400000000123", "1400000000123 ", "+1400000000123", "-1", "1.4e12", "0x1f", "١٢٣", "1" * 17],
)
def test_garbage_tonce_is_a_param_error(garbage: str) -> None:
    """Stricter than Peatio's `to_i` (which read garbage as 0 and answered 2007)."""
    with pytest.raises(ParamError, match="^tonce is invalid$") as info:
        check_tonce(garbage, NOW)
    assert info.value.field == "tonce"


# ================================================================================================= keys


def test_generate_key_is_40_alphanumerics_and_random() -> None:
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9]{40}", k) for k in keys)


# ==================================================================================== property-based

# Control characters are refused at the edge (node/web/inputs.py, tested there): any other text must
# survive encoding and decoding unchanged.
_CONTROL = "\u2028\u2029"
_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="[]" + _CONTROL),
    min_size=1, max_size=6,
)
_values = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=_CONTROL), max_size=8)


@st.composite
def _array_of_hashes(draw: st.DrawFn) -> list[ParamValue]:
    """Elements with one shared key set: the only shape Rack's repeat rule round-trips unambiguously."""
    keys = draw(st.lists(_names, min_size=1, max_size=3, unique=True))
    count = draw(st.integers(min_value=1, max_value=3))
    return [{k: draw(_values) for k in keys} for _ in range(count)]


_param_values: st.SearchStrategy[ParamValue] = st.one_of(
    _values,
    st.lists(_values, min_size=1, max_size=3),
    st.dictionaries(_names, _values, min_size=1, max_size=3),
    _array_of_hashes(),
)
_params = st.dictionaries(_names, _param_values, max_size=6)


def _encode(value: ParamValue, name: str, plus: bool) -> list[str]:
    """A naive client: pairs in natural order, brackets and all escaped, spaces as `+` or `%20`."""
    esc = quote_plus if plus else quote
    if isinstance(value, str):
        return [f"{esc(name, safe='')}={esc(value, safe='')}"]
    if isinstance(value, list):
        return [pair for item in value for pair in _encode(item, f"{name}[]", plus)]
    return [pair for key, item in value.items() for pair in _encode(item, f"{name}[{key}]", plus)]


def _encode_all(params: dict[str, ParamValue], plus: bool) -> str:
    return "&".join(pair for key, value in params.items() for pair in _encode(value, key, plus))


@settings(max_examples=150, deadline=None)
@given(params=_params, plus=st.booleans(), split=st.integers(min_value=0, max_value=6))
def test_parse_inverts_encode(params: dict[str, ParamValue], plus: bool, split: int) -> None:
    """Whatever the client's escaping or the query/body split, the server decodes what it meant."""
    assert dict(form(_encode_all(params, plus))) == params
    assert dict(parse_params("", to_query(params).encode(), FORM)) == params
    keys = list(params)
    query = _encode_all({k: params[k] for k in keys[:split]}, plus)
    body = _encode_all({k: params[k] for k in keys[split:]}, plus)
    assert dict(form(query, body)) == params


@settings(max_examples=150, deadline=None)
@given(
    scalars=st.dictionaries(_names, _values, max_size=8),
    orders=st.one_of(st.none(), _array_of_hashes()),
    seed=st.integers(),
)
def test_canonical_query_ignores_the_order_scalars_were_sent_in(
    scalars: dict[str, str], orders: list[ParamValue] | None, seed: int
) -> None:
    params: dict[str, ParamValue] = dict(scalars)
    if orders is not None:
        params["orders"] = orders
    shuffled_keys = list(params)
    random.Random(seed).shuffle(shuffled_keys)
    shuffled = {k: params[k] for k in shuffled_keys}
    assert canonical_query(shuffled) == canonical_query(params)
    assert canonical_query(form(_encode_all(shuffled, plus=True))) == canonical_query(params)
