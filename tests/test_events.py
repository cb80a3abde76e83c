"""The event bus's follow counts: a routing key is bound while it has followers, whatever the order
in which follows and unfollows arrive, and a binder that fails is tried again by the next change."""

from __future__ import annotations

import asyncio

from node.events import EventBus, follow_keys


async def test_a_key_is_bound_while_followed_and_changes_settle_in_order() -> None:
    bus = EventBus()
    calls: list[tuple[str, bool]] = []

    async def binder(key: str, on: bool) -> None:
        await asyncio.sleep(0.01)  # a broker round trip
        calls.append((key, on))

    bus.binder = binder
    await bus.follow("market.btcusd")
    await bus.follow("market.btcusd")
    assert calls == [("market.btcusd", True)] and bus.bound() == {"market.btcusd"}
    await bus.unfollow("market.btcusd")
    assert bus.followed("market.btcusd") and calls == [("market.btcusd", True)]
    await bus.unfollow("market.btcusd")
    assert not bus.followed("market.btcusd") and bus.bound() == set()
    assert calls[-1] == ("market.btcusd", False)
    # a follow, an unfollow and a follow at once: one binding at the end
    calls.clear()
    await asyncio.gather(bus.follow("member.7"), bus.unfollow("member.7"), bus.follow("member.7"))
    assert bus.followed("member.7") and bus.bound() == {"member.7"}
    assert calls[-1] == ("member.7", True)


async def test_a_failed_binding_is_tried_again_by_the_next_change() -> None:
    bus = EventBus()
    fail = [True]

    async def binder(key: str, on: bool) -> None:
        if fail[0]:
            raise ConnectionError("the broker is away")

    bus.binder = binder
    try:
        await bus.follow("market.ltcbtc")
    except ConnectionError:
        pass
    assert bus.followed("market.ltcbtc") and bus.bound() == set()
    fail[0] = False
    await bus.follow("market.ltcbtc")
    assert bus.bound() == {"market.ltcbtc"}


async def test_one_node_follows_without_a_binder() -> None:
    bus = EventBus()
    await bus.follow("market.*")
    assert bus.followed("market.*") and bus.bound() == set()


async def test_a_topic_is_wanted_while_one_of_its_keys_is_followed() -> None:
    """What a node keeps from another node's list: a market's envelopes by the market or by all
    markets, a member's by the member, every market's status always."""
    bus = EventBus()
    assert follow_keys("market.btcusd") == ("market.btcusd", "market.*")
    assert follow_keys("member.7") == ("member.7",)
    assert bus.wanted("market.btcusd.status") and not bus.wanted("market.btcusd") and not bus.wanted("member.7")
    await bus.follow("market.*")
    assert bus.wanted("market.btcusd") and bus.wanted("market.ltcbtc") and not bus.wanted("member.7")
    await bus.unfollow("market.*")
    await bus.follow("member.7")
    assert bus.wanted("member.7") and not bus.wanted("member.8") and not bus.wanted("market.btcusd")
