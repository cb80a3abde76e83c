"""The editable pages (node/cms.py) in each language, with a preview."""

from __future__ import annotations

from aiohttp import web

from node import cms
from node.admin.roles import Actor
from node.errors import ExchangeError
from node.web.api import EXCHANGE
from node.web.forms import Form
from node.web.i18n import LANGS
from node.web.pages.admin.common import _context, _flash_result, _form, _svc, add_error, route
from node.web.pages.common import redirect
from node.web.session import render, translator_of


@route("GET", "/admin/pages", "cms")
async def cms_list(request: web.Request, actor: Actor) -> web.StreamResponse:
    store = request.app[EXCHANGE].store
    pages = [{"slug": slug, "name": name, "langs": [await cms.get(store, slug, lang) for lang in LANGS]}
             for slug, name in cms.SLUGS.items()]
    return render(request, "admin/pages.html", await _context(request, actor, "pages", pages=pages, langs=LANGS))


def _cms_key(request: web.Request) -> tuple[str, str]:
    slug, lang = request.match_info["slug"], request.match_info["lang"]
    if slug not in cms.SLUGS or lang not in LANGS:
        raise web.HTTPNotFound()
    return slug, lang


@route("GET", "/admin/pages/{slug}/{lang}", "cms")
async def cms_edit(request: web.Request, actor: Actor) -> web.StreamResponse:
    slug, lang = _cms_key(request)
    page = await cms.get(request.app[EXCHANGE].store, slug, lang)
    return render(request, "admin/page_edit.html", await _context(
        request, actor, "pages", page=page, form=Form({"title": page["title"], "body": page["body"]}),
        preview=cms.render(page["body"])))


@route("POST", "/admin/pages/{slug}/{lang}", "cms")
async def cms_save(request: web.Request, actor: Actor) -> web.StreamResponse:
    _ = translator_of(request)
    slug, lang = _cms_key(request)
    form = await _form(request)
    try:
        await _svc(request).cms_save(actor, slug, lang, form.value("title"), form.value("body"))
    except ExchangeError as e:
        add_error(form, e, _, ("title", "body"))
        page = await cms.get(request.app[EXCHANGE].store, slug, lang)
        return render(request, "admin/page_edit.html", await _context(
            request, actor, "pages", page=page, form=form, preview=cms.render(form.value("body"))), status=400)
    _flash_result(request, True, _("The page is saved"))
    return redirect(f"/admin/pages/{slug}/{lang}")
