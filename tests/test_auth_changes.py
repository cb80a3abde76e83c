"""Revocations reach every node: a token deleted or disabled, or a member's API or log-in switched
off, on one node is dropped from every other node's caches at its next poll (about a second), even
though lookups are cached for a minute. Two `ApiKeys`/`ChangeFeed` pairs on one store stand for two
nodes; on both backends."""

from __future__ import annotations

import time

from node.apikeys import ApiKeys
from node.auth_changes import ChangeFeed
from node.errors import CreateOrderFailed
from node.exchange import Exchange, OrderInput
from node.secrets_box import SecretBox

BOX = SecretBox(b"k" * 32, "api-secret")


async def disabled(keys: ApiKeys, access: str) -> bool:
    token = await keys.find(access)
    assert token is not None
    return token.disabled


def node_view(ex: Exchange) -> tuple[ApiKeys, ChangeFeed]:
    keys = ApiKeys(ex.store, BOX)
    feed = ChangeFeed(ex.store)
    feed.listeners.append(keys.on_change)
    return keys, feed


async def test_a_revocation_on_one_node_reaches_the_others(exchange: Exchange) -> None:
    ex = exchange
    mid = await ex.create_member("a@example.com")
    here, here_feed = node_view(ex)
    there, there_feed = node_view(ex)
    await there_feed.poll(announce=False)
    access, _ = await here.create(mid, "bot", now=int(time.time() * 1000))
    second, _ = await here.create(mid, "other", now=int(time.time() * 1000))
    assert not await disabled(there, access)  # now cached over there
    token_id = (await here.list(mid))[0]["id"]

    assert await here.set_disabled(mid, token_id, True)
    assert await disabled(here, access)  # at once where it was made
    assert not await disabled(there, access)  # still cached there...
    assert await there_feed.poll() == 1
    assert await disabled(there, access)  # ...until the next poll
    assert not await disabled(there, second)  # the member's other key is not touched

    assert await here.set_member_api_disabled(mid, True)  # every key of the member
    await there_feed.poll()
    assert await disabled(there, second)
    assert await there_feed.poll() == 0  # a change is announced once


async def test_a_member_disabled_elsewhere_cannot_trade_here(exchange: Exchange) -> None:
    """The exchange's own "may trade" cache listens to the same feed."""
    from node import auth_changes

    ex = exchange
    mid = await ex.create_member("b@example.com")
    await ex.deposit(mid, "usd", "100")
    order = OrderInput("btcusd", "buy", "0.01", "100")
    await ex.submit_order(mid, order)  # "may trade" is cached now
    async with ex.store.transaction() as tx:  # what the admin service does on another node
        await tx.execute("UPDATE members SET disabled = 1 WHERE id = ?", mid)
        await auth_changes.record(tx, mid)
    await ex.submit_order(mid, order)  # not seen yet
    await ex.auth_changes.poll()
    try:
        await ex.submit_order(mid, order)
    except CreateOrderFailed as e:
        assert "not allowed" in e.message
    else:
        raise AssertionError("a disabled member could still trade")
