"""Translations: English (the source language) and Simplified Chinese, for the pages and the mails.

Messages are looked up by their English text, gettext-style: a template writes `{{ _("Sign up") }}`,
Python code `_("Sign up")` with a translator, and code that runs without a request (mails, errors
raised deep in the services) marks its text with `N_()` (node/errors.py) and is translated later.
The catalogs are JSON files in `node/web/locale/` (`zh-CN.json`): `messages` maps an English text to
its translation, `patterns` translate the core's error messages, which carry values (`volume has too
many decimal places (at most 4)`), and `fields` names the fields those messages start with.

This module has no web code, so services translate their mails with it; choosing a request's
language (cookie, Accept-Language) is node/web/i18n.py's. A test checks that every text marked in
the templates, the pages and the services has a Chinese translation, so no page is left half English.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from node.errors import ExchangeError, FormError

LANGS: dict[str, str] = {"en": "English", "zh-CN": "简体中文"}
DEFAULT_LANG = "en"
LOCALE_DIR = Path(__file__).resolve().parent / "web" / "locale"  # data beside the pages, packaged with them
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
    "checking…", "Peatio tree", "v2 tree", "{tree}: {user} holds {balance} {currency} within the published total {total}",
    "checked against the roots in this page: the public ones could not be fetched",
)
"""Texts that market.js and the other scripts show: handed to them in a JSON data block."""


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
