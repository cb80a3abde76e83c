"""The language of a request: the `lang` cookie (set by the switch in the page header), then the
browser's Accept-Language, then English. The catalogs and translators are node/i18n.py's (mails use
them too); they and the form errors (node/errors.py) are re-exported here for the pages.
"""

from __future__ import annotations

from node.errors import N_, FormError, FormErrors
from node.i18n import DEFAULT_LANG, JS_MESSAGES, LANGS, Translator, catalog, translator

__all__ = ["JS_MESSAGES", "LANGS", "LANG_COOKIE", "N_", "FormError", "FormErrors", "Translator", "catalog", "pick_lang",
           "translator"]

LANG_COOKIE = "lang"


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
