"""Translations of the pages: English (the source language) and Simplified Chinese.

Messages are looked up by their English text, gettext-style: a template writes `{{ _("Sign up") }}`,
Python code `_("Sign up")` with the request's translator, and code that runs without a request (mails,
errors raised deep in the members module) marks its text with `N_()` and is translated later. The
catalogs are JSON files in `node/web/locale/` (`zh-CN.json`): `messages` maps an English text to its
translation, `patterns` translate the core's error messages, which carry values (`volume has too
many decimal places (at most 4)`), and `fields` names the fields those messages start with.

A test checks that every text marked in the templates, the pages and the members module has a
Chinese translation, so no page is left half English.

The language comes from the `lang` cookie (set by the switch in the page header), then from the
browser's Accept-Language, then English.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from node.errors import ExchangeError, InvalidParameter

LANGS: dict[str, str] = {"en": "English", "zh-CN": "简体中文"}
DEFAULT_LANG = "en"
LANG_COOKIE = "lang"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
HTML_LANG = {"en": "en", "zh-CN": "zh-Hans"}

JS_MESSAGES = (
    "Cancel", "Cancelling…", "Could not reach the exchange, retrying…", "Cancel this order?",
    "Revoke this API key? Programs using it stop working at once.", "Copied",
    "Not enough orders in the book for this amount", "Open", "High", "Low", "Close", "Volume",
    "No trades in this period yet", "spread", "Please enter a price",
    "Reason: {reason}", "Trading is halted", "Trading has resumed", "Trading on {market} is halted",
    "Trading on {market} has resumed", "{side} order partly filled: {volume} {base} at {price}",
    "{side} order filled: {volume} {base} at {price}", "Cancel all {n} open orders in {market}?", "maker", "taker",
    "Dark theme", "Light theme", "Sound on", "Sound off",
)
"""Texts that market.js and the other scripts show: handed to them in a JSON data block."""


def N_(msgid: str) -> str:  # noqa: N802 - gettext's conventional name
    """Mark a text for translation without translating it now (there is no request here)."""
    return msgid


class FormError(InvalidParameter):
    """A form field is wrong: `msgid` with `params` is translated when the page is rendered.

    It is an InvalidParameter, so code outside the pages (the API, the CLI) still gets a clear
    English message and the field name.
    """

    def __init__(self, field: str | None, msgid: str, **params: Any) -> None:
        super().__init__(msgid.format(**params) if params else msgid, field)
        self.msgid = msgid
        self.params = params


class FormErrors(InvalidParameter):
    """Several fields of one form are wrong: every message is shown, next to its own field."""

    def __init__(self, errors: list[FormError]) -> None:
        super().__init__("; ".join(e.message for e in errors), errors[0].field if errors else None)
        self.errors = errors


@dataclass
class Catalog:
    messages: dict[str, str] = field(default_factory=dict)
    patterns: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


@cache
def catalog(lang: str) -> Catalog:
    """The catalog of `lang`, loaded once; English has none (its texts are the message ids)."""
    path = LOCALE_DIR / f"{lang}.json"
    if lang == DEFAULT_LANG or not path.exists():
        return Catalog()
    raw = json.loads(path.read_text(encoding="utf-8"))
    c = Catalog(
        messages=dict(raw.get("messages", {})),
        patterns=[(re.compile(p), t) for p, t in raw.get("patterns", [])],
        fields=dict(raw.get("fields", {})),
    )
    # Parts of the site kept by other modules bring their own file (`zh-CN.admin.json`: admin area, KYC,
    # tickets, pages), so that one catalog is not edited by every module at once; the main file wins.
    for extra in sorted(LOCALE_DIR.glob(f"{lang}.*.json")):
        more = json.loads(extra.read_text(encoding="utf-8"))
        c.messages = {**more.get("messages", {}), **c.messages}
        c.patterns += [(re.compile(p), t) for p, t in more.get("patterns", [])]
        c.fields = {**more.get("fields", {}), **c.fields}
    return c


class Translator:
    """The texts of one language; `_ = Translator(lang)` then `_("Log in")`, `_("{n} days", n=3)`."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGS else DEFAULT_LANG
        self.catalog = catalog(self.lang)

    @property
    def html_lang(self) -> str:
        return HTML_LANG[self.lang]

    def __call__(self, msgid: str, **params: Any) -> str:
        """`context|text` tells apart one English word with two meanings ("order type|Market")."""
        text = self.catalog.messages.get(msgid)
        if text is None:
            text = msgid.split("|", 1)[1] if "|" in msgid else msgid
        if params:
            try:
                return text.format(**params)
            except (KeyError, IndexError, ValueError):
                return msgid.format(**params)
        return text

    def field(self, name: str) -> str:
        return self.catalog.fields.get(name, name)

    def error(self, e: ExchangeError | str) -> str:
        """The message of an error, translated: our own (FormError) by id, the core's by pattern;
        a message no pattern knows stays English rather than being dropped."""
        if isinstance(e, FormError):
            return self(e.msgid, **e.params)
        message = e.message if isinstance(e, ExchangeError) else e
        exact = self.catalog.messages.get(message)
        if exact is not None:
            return exact
        for pattern, template in self.catalog.patterns:
            m = pattern.fullmatch(message)
            if m is not None:
                groups = {k: (self.field(v) if k == "field" else v) for k, v in m.groupdict().items()}
                return template.format(**groups)
        return message

    def js(self) -> dict[str, str]:
        return {k: self(k) for k in JS_MESSAGES}


@cache
def translator(lang: str) -> Translator:
    return Translator(lang)


def pick_lang(cookie: str | None, accept_language: str | None) -> str:
    """The cookie if it names a language we have, else the browser's first language we have."""
    if cookie in LANGS:
        return cookie
    for part in (accept_language or "").split(",")[:10]:
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):  # Traditional Chinese readers read Simplified better than English
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LANG
