"""One schema for both backends, as numbered migrations applied at start (`migrations/NNNN_name.sql`).

Each file runs once per store, in number order, inside the migrating transaction; its number is then
recorded in `schema_migrations`, so a store never runs a file twice. A released file is never edited:
a change is a new file with the next number. Up to 13 the migrations were applied in the order
1, 2, 4, 7, 6, 3, 5, 10, 9, 8, 11, 12, 13; none of them depends on a later one, so number order
builds the same schema (tests/test_migrations.py checks both, and the upgrade of an old store).

`{id}` stands for an auto-increment primary key and `{blob}` for bytes, spelled differently by
SQLite and PostgreSQL; everything else is portable SQL. Money columns are BIGINT smallest units, times
BIGINT epoch ms. Lines starting with `--` are comments; statements end with `;`. A file whose first
line is `-- only on sqlite` (or `postgresql`) fixes something of one backend's own: on the other it
runs nothing, and its number is recorded all the same.
"""

from __future__ import annotations

import re
from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"(\d{4})_\w+\.sql")
_ONLY = re.compile(r"-- only on (sqlite|postgresql)[ \t]*$", re.M)


def load_migrations(folder: Path = MIGRATIONS_DIR) -> list[tuple[int, str]]:
    """(version, script) for every migration file, in number order. A missing folder or a number used
    twice is a packaging or editing mistake: refuse to start rather than build half a schema."""
    found: dict[int, str] = {}
    for path in sorted(folder.glob("*.sql")):
        m = _NAME.fullmatch(path.name)
        if m is None:
            raise RuntimeError(f"migration file {path} is not named NNNN_name.sql")
        version = int(m.group(1))
        if version in found:
            raise RuntimeError(f"two migration files have the number {version} in {folder}")
        found[version] = path.read_text(encoding="utf-8")
    if not found:
        raise RuntimeError(f"no migration files in {folder}")
    return sorted(found.items())


MIGRATIONS: list[tuple[int, str]] = load_migrations()


def statements(script: str, *, id_sql: str, blob_sql: str, backend: str | None = None) -> list[str]:
    """The script's statements for one backend, comments dropped (a `;` in a comment must not split);
    none when the script is only for another `backend`."""
    only = _ONLY.match(script)
    if only is not None and backend is not None and only.group(1) != backend:
        return []
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    text = "\n".join(lines).replace("{id}", id_sql).replace("{blob}", blob_sql)
    return [s.strip() for s in text.split(";") if s.strip()]


HOUSE_EMAIL = "house@exchange.invalid"
"""The house fee account's member: fees are credited here, so they never vanish from the books."""
