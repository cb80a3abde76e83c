"""Text from clients, checked once at the edge: every form field, query parameter, path parameter
and API parameter goes through `check_text` (and its name through `check_name`) before a handler
sees it.

Why here and not in each handler: a NUL byte is refused by PostgreSQL's text type but stored by
SQLite, so without one gate the same request is a 500 on one store and a silently stored value on
the other; and a control character in a value ends up in a page, a mail or a log line. A value
that fails is answered 400 with the field named (API error 1001), whatever the route and store.

Allowed in values: printable text, and tab, line feed and carriage return (text areas). Refused:
the other C0 controls (NUL included), DEL, the C1 controls and the Unicode line and paragraph
separators (which some log viewers and mail clients break lines at). Names allow none of them.
Lengths: names up to `MAX_NAME`, values up to `MAX_TEXT` characters, `LONG_TEXT` for the few
multi-line fields that are allowed more; each handler may still ask for less.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from node.errors import InvalidParameter

MAX_NAME = 100
MAX_TEXT = 4096
LONG_TEXT = {"body": 20_000}  # a ticket's text (5,000) and a page of the CMS (20,000)
_BAD_VALUE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_BAD_NAME = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9_.\-=&]*")  # nothing to decode, no control character possible


def shown(text: str, limit: int = 60) -> str:
    """A client's text made safe to quote in a message or a log line: escaped and cut short."""
    return text[:limit].encode("unicode_escape").decode("ascii")


def check_name(name: str) -> str:
    """A parameter's name: short and without control characters."""
    if len(name) > MAX_NAME:
        raise InvalidParameter(f"parameter name {shown(name, 40)}… is too long (maximum is {MAX_NAME} characters)",
                               shown(name, 40))
    if _BAD_NAME.search(name):
        raise InvalidParameter(f"parameter name {shown(name)} contains a control character", shown(name))
    return name


def check_text(name: str, value: str, max_len: int | None = None) -> str:
    """A parameter's value: at most `max_len` characters (default by name) and no control
    characters but tab and line breaks; else 400 naming the field."""
    limit = max_len if max_len is not None else LONG_TEXT.get(name.rsplit("[", 1)[-1].rstrip("]"), MAX_TEXT)
    if len(value) > limit:
        raise InvalidParameter(f"{shown(name)} is too long (maximum is {limit} characters)", shown(name))
    m = _BAD_VALUE.search(value)
    if m is not None:
        raise InvalidParameter(f"{shown(name)} contains a control character (U+{ord(m.group()):04X})", shown(name))
    return value


def check_pairs(pairs: Iterable[tuple[str, Any]]) -> None:
    """Names and text values of a form or query (files are checked by their names only)."""
    for name, value in pairs:
        check_name(name)
        if isinstance(value, str):
            check_text(name, value)
        else:
            filename = getattr(value, "filename", None)
            if isinstance(filename, str):
                check_text(name, filename, 255)


def plain_query_ok(raw: str) -> bool:
    """Does a raw query string pass `check_pairs` as it stands? True for one of plain characters
    (letters, digits, `_.-=&`: yarl decodes nothing in it, so no control character can be in it)
    whose names and values are within the default lengths; False sends it through the full check,
    which then names what is wrong. Most queries are plain, and parsing one into a MultiDict only
    to check it costs a few microseconds of a small API request."""
    if not _PLAIN_QUERY.fullmatch(raw):
        return False
    if len(raw) <= MAX_NAME:
        return True
    for pair in raw.split("&"):
        name, _, value = pair.partition("=")
        if len(name) > MAX_NAME or len(value) > MAX_TEXT:
            return False
    return True


def check_request(request: web.Request, form: MultiDictProxy[Any] | None = None) -> None:
    """The query, the path's parameters and (already read) form fields of a request."""
    if not plain_query_ok(request.rel_url.raw_query_string):
        check_pairs(request.query.items())
    match = request.match_info
    if match:
        check_pairs(match.items())
    if form is not None:
        check_pairs(form.items())


__all__ = ["LONG_TEXT", "MAX_NAME", "MAX_TEXT", "check_name", "check_pairs", "check_request", "check_text", "plain_query_ok",
           "shown"]
