"""Editable pages (fees, terms, API documentation links), in English and Simplified Chinese.

Staff with the `cms` permission edit a page's title and text per language in the admin area; until
someone does, the page shows the default text below, so a new exchange has sensible pages on day one.
The text is a small, safe markup, rendered here: blank lines separate paragraphs, `# ` and `## ` start
headings, `- ` list items, and `[text](url)` makes a link to a path on this site or an http(s) address.
Everything else is escaped, so no HTML, script or style ever reaches a page from the editor (and the
CSP would refuse inline script anyway). The fees page also shows the live fee table under the text.
"""

from __future__ import annotations

import re
from typing import Any

from markupsafe import Markup, escape

from node.clock import now_ms
from node.errors import N_, FormError, FormErrors
from node.i18n import LANGS
from node.store import Store

SLUGS: dict[str, str] = {"fees": N_("Fees"), "terms": N_("Terms of use"), "api": N_("API documentation")}
TITLE_MAX = 120
BODY_MAX = 20_000
_LINK = re.compile(r"\[([^\]\n]{1,200})\]\(((?:https?://|/)[^\s)]{0,500})\)")

DEFAULTS: dict[tuple[str, str], tuple[str, str]] = {
    ("fees", "en"): ("Fees", "Trading fees are charged on what you receive in a trade: the maker fee when your order "
                     "was resting in the book, the taker fee when it matched at once. The table below shows the fees "
                     "in force for every market.\n\nWithdrawals cost a fixed fee per currency, shown on the funds page "
                     "before you confirm. Deposits are free."),
    ("fees", "zh-CN"): ("费率", "交易手续费按您在成交中收到的资产收取：您的订单在挂单簿中等待成交时适用挂单（maker）费率，"
                        "立即成交时适用吃单（taker）费率。下表列出每个市场当前的费率。\n\n提现按币种收取固定手续费，"
                        "在资金页面确认前显示。充值免费。"),
    ("terms", "en"): ("Terms of use", "# Terms of use\n\nBy opening an account you agree to keep your password and "
                      "second factor safe, to trade only with funds you own, and to give true information when you "
                      "verify your identity.\n\n## Risks\n\n- Prices of digital currencies move fast; you can lose money.\n"
                      "- Orders are final once matched.\n\n## Contact\n\nWrite to us through a [support ticket](/support/tickets)."),
    ("terms", "zh-CN"): ("使用条款", "# 使用条款\n\n开设账户即表示您同意妥善保管密码和二次验证，只用您自己拥有的资金交易，"
                         "并在身份认证时提供真实信息。\n\n## 风险\n\n- 数字货币价格波动剧烈，您可能亏损。\n- 订单一经成交即不可撤销。"
                         "\n\n## 联系我们\n\n请通过[工单](/support/tickets)联系我们。"),
    ("api", "en"): ("API documentation", "The exchange speaks Peatio's REST API v2, so existing Peatio clients and bots "
                    "work unchanged.\n\n- [Interactive API reference](/api-docs)\n- [OpenAPI description](/api/v2/doc)\n"
                    "- [Create an API key](/api_keys)"),
    ("api", "zh-CN"): ("API 文档", "本交易所提供与 Peatio 兼容的 REST API v2，现有的 Peatio 客户端和机器人无需修改即可使用。\n\n"
                       "- [交互式 API 参考](/api-docs)\n- [OpenAPI 描述](/api/v2/doc)\n- [创建 API 密钥](/api_keys)"),
}


def _inline(text: str) -> Markup:
    """Escape a line, then turn `[text](url)` into links (url checked by the pattern, text escaped)."""
    out = Markup("")
    pos = 0
    for m in _LINK.finditer(text):
        out += escape(text[pos:m.start()])
        out += Markup('<a href="{}">{}</a>').format(m.group(2), m.group(1))
        pos = m.end()
    return out + escape(text[pos:])


def render(body: str) -> Markup:
    """The page text as safe HTML (see the module's description of the markup)."""
    html: list[Markup] = []
    for block in re.split(r"\n\s*\n", body.replace("\r\n", "\n").strip()):
        lines = [ln.strip() for ln in block.split("\n") if ln.strip()]
        if not lines:
            continue
        if all(ln.startswith("- ") for ln in lines):
            items = Markup("").join(Markup("<li>{}</li>").format(_inline(ln[2:])) for ln in lines)
            html.append(Markup("<ul>{}</ul>").format(items))
        elif len(lines) == 1 and lines[0].startswith("## "):
            html.append(Markup("<h3>{}</h3>").format(_inline(lines[0][3:])))
        elif len(lines) == 1 and lines[0].startswith("# "):
            html.append(Markup("<h2>{}</h2>").format(_inline(lines[0][2:])))
        else:
            html.append(Markup("<p>{}</p>").format(Markup("<br>").join(_inline(ln) for ln in lines)))
    return Markup("\n").join(html)


def check_slug(slug: str) -> str:
    if slug not in SLUGS:
        raise FormError("slug", N_("There is no such page"))
    return slug


async def get(store: Store, slug: str, lang: str) -> dict[str, Any]:
    """A page in a language: the edited version, else the default text; `edited` tells which."""
    check_slug(slug)
    lang = lang if lang in LANGS else "en"
    row = await store.fetchrow("SELECT * FROM cms_pages WHERE slug = ? AND lang = ?", slug, lang)
    if row is not None:
        return {"slug": slug, "lang": lang, "title": row["title"], "body": row["body"], "edited": True,
                "updated_at": int(row["updated_at"]), "updated_by": row["updated_by"]}
    title, body = DEFAULTS[(slug, lang)]
    return {"slug": slug, "lang": lang, "title": title, "body": body, "edited": False, "updated_at": None,
            "updated_by": ""}


async def save(store: Store, slug: str, lang: str, title: str, body: str, by: str) -> None:
    check_slug(slug)
    errors: list[FormError] = []
    if lang not in LANGS:
        errors.append(FormError("lang", N_("Choose a language")))
    title = " ".join(title.split())
    if not title:
        errors.append(FormError("title", N_("This field is required")))
    elif len(title) > TITLE_MAX:
        errors.append(FormError("title", N_("Too long: at most {n} characters"), n=TITLE_MAX))
    body = body.replace("\r\n", "\n").strip()
    if not body:
        errors.append(FormError("body", N_("This field is required")))
    elif len(body) > BODY_MAX:
        errors.append(FormError("body", N_("Too long: at most {n} characters"), n=BODY_MAX))
    if errors:
        raise FormErrors(errors)
    await store.execute(
        "INSERT INTO cms_pages (slug, lang, title, body, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (slug, lang) DO UPDATE SET title = excluded.title, body = excluded.body, "
        "updated_at = excluded.updated_at, updated_by = excluded.updated_by", slug, lang, title, body, now_ms(), by[:254])
