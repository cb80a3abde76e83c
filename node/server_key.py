"""A node, or a command, refuses to start with another server key than the exchange's.

With the wrong key nothing sealed opens: every signed request and every two-factor log in would
fail, one by one, long after the start. The store keeps a fingerprint of the key (an HMAC of a fixed
text, `secrets_box.key_check`) from the first start with it; a store from before the fingerprint is
judged by one of its sealed secrets, then given the fingerprint.
"""

from __future__ import annotations

import hmac

from node.config import ConfigError
from node.secrets_box import SecretBox, WrongServerKey, key_check
from node.store import Store

CHECK = "server_key_check"  # its row in cluster_info
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
            raise ConfigError(_wrong(source, "a secret sealed in the database does not open with it"))
        await store.execute("INSERT INTO cluster_info (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                            CHECK, mine)
        held = await store.fetchval("SELECT value FROM cluster_info WHERE name = ?", CHECK)  # a racing start's
    if not hmac.compare_digest(str(held), mine):
        raise ConfigError(_wrong(source, "its fingerprint differs from the one the database keeps"))


async def _opens_what_is_sealed(store: Store, master_key: bytes) -> bool:
    for table, key, purpose in SEALED:
        sealed = await store.fetchval(f"SELECT secret_enc FROM {table} ORDER BY {key} LIMIT 1")
        if sealed is None:
            continue
        try:
            SecretBox(master_key, purpose).open(sealed)
        except WrongServerKey:
            return False
    return True


def _wrong(source: str, why: str) -> str:
    return (f"the server key from {source} is not this exchange's ({why}): API secrets and 2FA secrets "
            "would not open. Give every node and command the same key (--key-file, EXCHANGE_KEY_FILE or "
            "EXCHANGE_SECRET_KEY; docs/operations.md, \"The server key\")")
