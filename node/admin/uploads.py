"""Files members upload (identity documents, ticket attachments), kept outside the web root.

Nothing uploaded is ever served from `node/web/static`: files go under `var/uploads/<purpose>/<member>/`
with a random name (never the member's file name: no path tricks, no guessing), readable by the
exchange's user only, and the database row (`uploads`) is the only way to find one. They are served
by handlers that check who asks, as an attachment or a sandboxed image, never as HTML.

Checks, before anything is written: the size (at most `MAX_BYTES`), the type from the file's first
bytes (a JPEG, PNG or PDF signature; the browser's Content-Type and the name's extension are the
member's word, not evidence), and the extension must agree with what the bytes are, so
`passport.html` holding a PNG or `scan.jpg` holding a PDF is refused. Ticket attachments may also be
plain text (UTF-8 without control characters).

Where the files live: `EXCHANGE_UPLOADS_DIR`, else `uploads/` beside the SQLite database file (so each
test database has its own), else `var/uploads`. On PostgreSQL (a cluster's store) each file is also
kept in the database (`upload_data`), so a node that does not have it on disk (the upload came in
through another node) serves it from there: no shared volume is needed. On SQLite (one node) the
file alone is kept, so that megabytes never pass through the single writer that trading uses.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.clock import now_ms
from node.config import Config
from node.errors import N_, FormError
from node.store import Store, sqlite_path

MAX_BYTES = 5 * 1024 * 1024
MAX_NAME = 120
IMAGE_PDF = ("image/jpeg", "image/png", "application/pdf")
WITH_TEXT = (*IMAGE_PDF, "text/plain")
SIGNATURES = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n", "application/pdf": b"%PDF-"}
EXTENSIONS = {"image/jpeg": (".jpg", ".jpeg"), "image/png": (".png",), "application/pdf": (".pdf",), "text/plain": (".txt", ".log")}
TYPE_NAMES = {"image/jpeg": "JPEG", "image/png": "PNG", "application/pdf": "PDF", "text/plain": "TXT"}


@dataclass(frozen=True)
class Incoming:
    """An uploaded file, read (up to one byte past the limit) and not yet checked."""

    name: str
    data: bytes


def uploads_root(config: Config) -> Path:
    env = os.environ.get("EXCHANGE_UPLOADS_DIR")
    if env:
        return Path(env).resolve()
    if config.database.startswith("sqlite://"):
        return (Path(sqlite_path(config.database)).resolve().parent / "uploads")
    return Path("var/uploads").resolve()


def from_field(value: Any) -> Incoming | None:
    """The file of a multipart form field (aiohttp's FileField), or None when no file was chosen."""
    file = getattr(value, "file", None)
    if file is None:
        return None
    data = file.read(MAX_BYTES + 1)
    name = str(getattr(value, "filename", "") or "")
    if not data and not name:
        return None
    return Incoming(name, data)


def sniff(data: bytes, allowed: tuple[str, ...]) -> str | None:
    """The type the bytes are (one of `allowed`), or None."""
    for mime in allowed:
        sig = SIGNATURES.get(mime)
        if sig is not None and data.startswith(sig):
            return mime
    if "text/plain" in allowed:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if text and all(c.isprintable() or c in "\t\r\n" for c in text):
            return "text/plain"
    return None


def check(field: str, f: Incoming, allowed: tuple[str, ...]) -> str:
    """The file's checked type; a FormError on `field` saying what is wrong otherwise."""
    kinds = ", ".join(TYPE_NAMES[m] for m in allowed)
    if not f.data:
        raise FormError(field, N_("The file is empty"))
    if len(f.data) > MAX_BYTES:
        raise FormError(field, N_("The file is too large: at most {n} MB"), n=MAX_BYTES // (1024 * 1024))
    mime = sniff(f.data, allowed)
    if mime is None:
        raise FormError(field, N_("This type of file is not accepted: only {kinds}"), kinds=kinds)
    ext = os.path.splitext(f.name.lower())[1]
    if ext not in EXTENSIONS[mime]:
        raise FormError(field, N_("The file name does not match its content: a {kind} file must end in {ext}"),
                        kind=TYPE_NAMES[mime], ext=" / ".join(EXTENSIONS[mime]))
    return mime


def clean_name(name: str) -> str:
    """A file name to show and to offer for download: its last path part, printable, short."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c.isprintable() and c not in '"<>:|?*;')
    return base[-MAX_NAME:] or "file"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


async def write_file(root: Path, member_id: int, purpose: str, f: Incoming, mime: str) -> str:
    """Write a checked file under a fresh random name; returns its path relative to `root`. Done
    outside any transaction (an fsync of megabytes must not hold the database's write lock)."""
    rel = Path(purpose) / str(member_id) / f"{secrets.token_hex(16)}{EXTENSIONS[mime][0]}"
    await asyncio.to_thread(_write, root / rel, f.data)
    return rel.as_posix()


def shared(store: Store) -> bool:
    """Whether uploads are also kept in the store (PostgreSQL: several nodes may serve them)."""
    return store.backend != "sqlite"


async def add_row(tx: Any, member_id: int, purpose: str, owner_id: int, f: Incoming, mime: str, rel: str,
                  keep_data: bool = False) -> int:
    """The row of a file written by `write_file` (in the caller's transaction); returns its id. With
    `keep_data` (see `shared`), the bytes are stored too."""
    value = await tx.fetchval(
        "INSERT INTO uploads (member_id, purpose, owner_id, name, mime, size, sha256, path, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        member_id, purpose, owner_id, clean_name(f.name), mime, len(f.data), hashlib.sha256(f.data).hexdigest(), rel,
        now_ms())
    if keep_data:
        await tx.execute("INSERT INTO upload_data (upload_id, data) VALUES (?, ?)", int(value), f.data)
    return int(value)


async def save(store: Store, root: Path, member_id: int, purpose: str, owner_id: int, f: Incoming, mime: str) -> int:
    """Write a checked file, then its row; returns the row's id. The file comes first: a row never
    points at nothing (a crash in between leaves an orphan file, never a broken link)."""
    rel = await write_file(root, member_id, purpose, f, mime)
    async with store.transaction() as tx:
        return await add_row(tx, member_id, purpose, owner_id, f, mime, rel, keep_data=shared(store))


async def load(store: Store, root: Path, upload_id: int) -> tuple[dict[str, Any], bytes] | None:
    """The row and the bytes of an upload, from this node's disk or else from the store; None when
    there is no such upload (or its bytes are nowhere, or not what was uploaded)."""
    row = await store.fetchrow("SELECT * FROM uploads WHERE id = ?", upload_id)
    if row is None:
        return None
    data = await asyncio.to_thread(_read, root, str(row["path"]))
    if data is None and shared(store):
        data = await store.fetchval("SELECT data FROM upload_data WHERE upload_id = ?", upload_id)
        if data is not None and hashlib.sha256(bytes(data)).hexdigest() != row["sha256"]:
            data = None
    return None if data is None else (dict(row), bytes(data))


def _read(root: Path, rel: str) -> bytes | None:
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):  # only rows we wrote exist, but never follow a path out
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None
