"""Shared pieces of the admin, KYC and ticket tests (no tests here): an exchange with configured
admins, withdrawal limits per KYC level and a bank wallet for USD; staff who log in and unlock the
admin area; multipart posts with files.
"""

from __future__ import annotations

import html
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
import pytest

from node.admin import roles
from node.config import Config, parse_config
from node.exchange import Exchange
from node.web.pages.security import SECURITY
from tests.conftest import ROOT
from tests.test_pages import Site, Visitor, serve_site

BOSS, BOSS2 = "boss@example.com", "boss2@example.com"
BANK = {"channel": "bank", "bank_name": "First Test Bank", "account_holder": "PyExchange Ltd",
        "account_number": "DE89 3704 0044 0532 0130 00", "reference_prefix": "PX", "withdraw_fee": "2",
        "min_withdraw": "10"}
LIMITS = {"level0": {"usd": "1000", "btc": "0.5"}, "level1": {"usd": "100000", "btc": "10"}}


def png(width: int = 240, height: int = 150, rgb: tuple[int, int, int] = (40, 90, 160)) -> bytes:
    """A real PNG image (a card-like picture with a stripe), made here: no image library needed."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"".join(bytes((230, 230, 230) if 20 < y < 40 else rgb) for _ in range(width))
                    for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = png()
JPEG = b"\xff\xd8\xff\xe0" + bytes(300)
PDF = b"%PDF-1.4\n" + b"1 0 obj\n<<>>\nendobj\n" * 10


def admin_config(database: str, **extra: Any) -> Config:
    data = tomllib.loads((ROOT / "cluster.toml").read_text())
    data["exchange"]["database"] = database
    data["currencies"]["usd"]["wallet"] = dict(BANK)
    data["admin"] = {"emails": [BOSS, BOSS2], "withdraw_limits": LIMITS}
    data.update(extra)
    return parse_config(data, "test")


async def admin_site(url: str, tmp_path: Path) -> AsyncIterator[Site]:
    async with serve_site(admin_config(url), tmp_path) as site:
        yield site


@pytest.fixture
async def asite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Site]:
    monkeypatch.setenv("EXCHANGE_UPLOADS_DIR", str(tmp_path / "uploads"))
    async for s in admin_site(f"sqlite:///{tmp_path}/admin.db", tmp_path):
        yield s


@pytest.fixture
async def any_asite(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Site]:
    monkeypatch.setenv("EXCHANGE_UPLOADS_DIR", str(tmp_path / "uploads"))
    async for s in admin_site(database_url, tmp_path):
        yield s


class Staff(Visitor):
    """A staff member's browser, with the authenticator secret and recovery codes of their 2FA."""

    secret: str = ""
    recovery: list[str]

    def code(self) -> str:
        return pyotp.TOTP(self.secret).now()

    async def unlock(self) -> None:
        """Unlock with a recovery code (single use, never refused as a replay like a TOTP code of the
        same 30 s step would be)."""
        status, _ = await self.post("/admin/unlock", {"otp_code": self.recovery.pop(), "next": "/admin"})
        assert status == 200 and "Dashboard" in self.text, self.text[:2000]


async def enroll(site: Site, member_id: int) -> tuple[str, list[str]]:
    """Switch the authenticator app on for a member (what the /security/totp page does)."""
    sec = site.server.app[SECURITY]
    secret = await sec.totp.pending_secret(member_id)
    return secret, await sec.totp.activate(member_id)


async def staff(site: Site, email: str, role: str | None = None, unlock: bool = True, funds: bool = False) -> Staff:
    """A member who logged in, with a role (the configured admins need none), a second factor, and
    (unless `unlock=False`) the admin area unlocked with a code of it."""
    v = await site.member(email, usd="100000" if funds else None, btc="5" if funds else None)
    v.__class__ = Staff
    assert isinstance(v, Staff)
    mid = await site.mid(email)
    if role is not None:
        await roles.grant(site.ex.store, mid, role, "test")
    v.secret, v.recovery = await enroll(site, mid)
    if unlock:
        status, _ = await v.post("/admin/unlock", {"otp_code": v.code(), "next": "/admin"})
        assert status == 200 and "Dashboard" in v.text, v.text[:2000]
    return v


async def post_files(v: Visitor, path: str, fields: dict[str, str], files: dict[str, tuple[str, bytes, str]],
                     csrf: bool = True) -> tuple[int, str]:
    """A multipart form post, like a browser sends a form with file inputs."""
    data = aiohttp.FormData()
    for k, value in fields.items():
        data.add_field(k, value)
    for k, (name, content, ctype) in files.items():
        data.add_field(k, content, filename=name, content_type=ctype)
    if csrf:
        data.add_field("csrf_token", await v.token())
    r = await v.c.post(path, data=data)
    v.text = await r.text()
    return r.status, v.text


def flash(v: Visitor) -> str:
    m = re.search(r'<div class="flashes" id="flashes">(.*?)</div>\s*<main', v.text, re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", m.group(1)).strip()) if m else ""


async def audit_rows(ex: Exchange, action: str | None = None) -> list[dict[str, Any]]:
    """Entries of the exchange's audit log (oldest first), all or of one action."""
    sql = "SELECT * FROM audit_log"
    args: list[Any] = []
    if action is not None:
        sql += " WHERE action = ?"
        args.append(action)
    return [dict(r) for r in await ex.store.fetch(sql + " ORDER BY seq", *args)]
