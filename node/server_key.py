"""A node, or a command, refuses to start with another server key than the exchange's.

With the wrong key nothing sealed opens: every signed request and every two-factor log in would
fail, one by one, long after the start. The store keeps a fingerprint of the key (an HMAC of a fixed
text, `secrets_box.key_check`) from the first start with it; a store from before the fingerprint is
judged by its newest sealed secrets: the key must open most of them (a command may once have sealed
a few under a stray key, and that key must not become the exchange's), then it gets the fingerprint.
"""

from __future__ import annotations

import hmac

from node.config import ConfigError
from node.secrets_box import SecretBox, WrongServerKey, key_check
from node.store import Store

CHECK = "server_key_check"  # its row in cluster_info
SAMPLE = 20  # newest sealed secrets of each kind tried on a store without the fingerprint
SEALED = (  # (table, its key column, purpose of its SecretBox): secrets sealed with the server key
    ("api_tokens", "id", "api-secret"),
    ("security_totp", "member_id", "totp-secret"),
)


async def check_server_key(store: Store, master_key: bytes, source: str) -> None:
    """Refuse `master_key` (ConfigError naming `source`, where it came from) unless it is the key
    this store's secrets are sealed with; the first key a store sees becomes its key."""
    mine = key_check(master_key)
    held = await store.fetchval("SELECT value FROM cluster_info WHERE name = ?", CHECK)
    if held is None:
        if not await _opens_what_is_sealed(store, master_key):
            raise ConfigError(_wrong(source, "most secrets sealed in the database do not open with it"))
        await store.execute("INSERT INTO cluster_info (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                            CHECK, mine)
        held = await store.fetchval("SELECT value FROM cluster_info WHERE name = ?", CHECK)  # a racing start's
    if not hmac.compare_digest(str(held), mine):
        raise ConfigError(_wrong(source, "its fingerprint differs from the one the database keeps"))


async def _opens_what_is_sealed(store: Store, master_key: bytes) -> bool:
    """Nothing sealed yet, or the key opens most of the newest sealed secrets."""
    tried = opened = 0
    for table, key, purpose in SEALED:
        box = SecretBox(master_key, purpose)
        for row in await store.fetch(f"SELECT secret_enc FROM {table} ORDER BY {key} DESC LIMIT {SAMPLE}"):
            tried += 1
            try:
                box.open(row["secret_enc"])
                opened += 1
            except WrongServerKey:
                pass
    return 2 * opened > tried or tried == 0


def _wrong(source: str, why: str) -> str:
    return (f"the server key from {source} is not this exchange's ({why}): API secrets and 2FA secrets "
            "would not open. Give every node and command the same key (--key-file, EXCHANGE_KEY_FILE or "
            "EXCHANGE_SECRET_KEY; docs/operations.md, \"Install a node\": the server key)")
