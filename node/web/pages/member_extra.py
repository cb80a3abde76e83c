"""The routes of the member's side of identity verification, support tickets and the editable pages.

- `/kyc`: the verification state (with the reason of a rejection), the withdrawal limits it sets
  now and after verification, and the form (identity data and two documents, multipart) while one
  may be sent.
- `/support/tickets`: the member's tickets with unread markers, a form to open one, each ticket's
  conversation (reading it clears its marker), comments, close and reopen, attachments.
- `/pages/fees|terms|api`: the editable pages in the visitor's language (the fees page adds the live
  fee table of every market).

Everything is the member's own: another member's ticket or file answers 404, exactly like one that
does not exist. Texts from members are shown through autoescaping only.

The pages themselves are in `kyc`, `support` and `cms`.
"""

from __future__ import annotations

from aiohttp import web

from node.kyc import Kyc
from node.tickets import Tickets
from node.web.pages.admin import KYC, TICKETS
from node.web.pages.cms import cms_page
from node.web.pages.kyc import kyc_page, kyc_submit
from node.web.pages.support import (
    ticket_close,
    ticket_comment,
    ticket_file,
    ticket_open,
    ticket_page,
    ticket_reopen,
    tickets_page,
)


def add_routes(app: web.Application, kyc: Kyc, tickets: Tickets) -> None:
    """The member's KYC and support pages, on the node's KYC and ticket services."""
    app[KYC] = kyc
    app[TICKETS] = tickets
    r = app.router
    r.add_get("/kyc", kyc_page)
    r.add_post("/kyc", kyc_submit)
    r.add_get("/support/tickets", tickets_page)
    r.add_post("/support/tickets", ticket_open)
    r.add_get("/support/tickets/{id}", ticket_page)
    r.add_post("/support/tickets/{id}/comments", ticket_comment)
    r.add_post("/support/tickets/{id}/close", ticket_close)
    r.add_post("/support/tickets/{id}/reopen", ticket_reopen)
    r.add_get("/support/files/{id}", ticket_file)
    r.add_get("/pages/{slug}", cms_page)


__all__ = ["add_routes"]
