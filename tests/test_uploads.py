"""Uploaded files on several nodes: on PostgreSQL (a cluster's store) a node that does not have a
file on its disk serves it from the store, checked against its hash; on SQLite (one node) the file
alone is kept, and the store carries no bytes."""

from __future__ import annotations

from pathlib import Path

from node.admin import uploads
from node.store import open_store

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def test_an_upload_is_served_by_a_node_without_the_file(database_url: str, tmp_path: Path) -> None:
    store = await open_store(database_url)
    try:
        here, there = tmp_path / "node-a", tmp_path / "node-b"
        uid = await uploads.save(store, here, 7, "ticket", 1, uploads.Incoming("scan.png", PNG), "image/png")
        row, data = await uploads.load(store, here, uid) or (None, b"")
        assert data == PNG and row is not None and row["name"] == "scan.png"
        kept = await store.fetchval("SELECT COUNT(*) FROM upload_data WHERE upload_id = ?", uid)
        elsewhere = await uploads.load(store, there, uid)  # node B never had the file
        if store.backend == "sqlite":
            assert kept == 0 and elsewhere is None  # one node: the file is the only copy
            return
        assert kept == 1 and elsewhere is not None and elsewhere[1] == PNG
        # bytes that are not what was uploaded are not served
        await store.execute("UPDATE upload_data SET data = ? WHERE upload_id = ?", b"tampered", uid)
        assert await uploads.load(store, there, uid) is None
    finally:
        await store.close()
