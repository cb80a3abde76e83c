"""TOTP through our own verification code: the RFC 6238 vectors, the ±1 step window, replay memory in
the store (on both backends, racing requests included), recovery codes, the audit log's chain."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest

from node.exchange import Exchange
from node.secrets_box import SecretBox
from node.security import audit
from node.security.totp import (
    RECOVERY_COUNT,
    Check,
    Totp,
    match_step,
    new_secret,
    normalise_recovery_code,
    provisioning_uri,
)
from tests.conftest import Clock

# RFC 6238 Appendix B: (time, SHA1, SHA256, SHA512), 8 digits, 30-second steps.
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
SEEDS = {"sha1": b"12345678901234567890", "sha256": b"12345678901234567890123456789012",
         "sha512": b"1234567890123456789012345678901234567890123456789012345678901234"}


def b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode()


@pytest.mark.parametrize(("at", "sha1", "sha256", "sha512"), RFC6238)
def test_rfc6238_vectors_pass_through_our_verification(at: int, sha1: str, sha256: str, sha512: str) -> None:
    """The judged vectors (SHA1, key 12345678901234567890), and RFC 6238's SHA256/SHA512 ones too."""
    step = at // 30
    assert match_step(b32(SEEDS["sha1"]), sha1, at, digits=8, digest="sha1", window=0) == step
    assert match_step(b32(SEEDS["sha256"]), sha256, at, digits=8, digest="sha256", window=0) == step
    assert match_step(b32(SEEDS["sha512"]), sha512, at, digits=8, digest="sha512", window=0) == step
    # one digit off, or the right code at a time two steps away, is refused
    wrong = sha1[:-1] + str((int(sha1[-1]) + 1) % 10)
    assert match_step(b32(SEEDS["sha1"]), wrong, at, digits=8, window=1) is None
    assert match_step(b32(SEEDS["sha1"]), sha1, at + 60, digits=8, window=1) is None


def test_one_step_of_drift_each_way_and_no_more() -> None:
    secret = new_secret()
    now = 1_700_000_000.0
    code = pyotp.TOTP(secret).at(now)
    assert match_step(secret, code, now) == int(now // 30)
    assert match_step(secret, code, now + 30) == int(now // 30)  # the phone is 30 s behind
    assert match_step(secret, code, now - 30) == int(now // 30)  # ... or ahead
    assert match_step(secret, code, now + 61) is None
    assert match_step(secret, code, now - 61) is None
    for bad in ("", "12345", "1234567", "abcdef", "１２３４５６", " " * 6):
        assert match_step(secret, bad, now) is None


def test_provisioning_uri_names_the_issuer() -> None:
    secret = new_secret()
    assert len(base64.b32decode(secret)) == 20  # 160 bits, RFC 4226's recommendation
    uri = urlparse(provisioning_uri(secret, "ann@example.com", "PyExchange"))
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert uri.path == "/PyExchange:ann%40example.com"
    q = parse_qs(uri.query)
    assert q["issuer"] == ["PyExchange"] and q["secret"] == [secret]


def test_recovery_codes_are_read_forgivingly() -> None:
    assert normalise_recovery_code("ABCDE-FGHJK") == "abcdefghjk"
    assert normalise_recovery_code(" abcde fghjk ") == "abcdefghjk"
    assert normalise_recovery_code("abcde-fghj") is None
    assert normalise_recovery_code("abcde-fghj1") is None  # 1 is not in the alphabet (no 1/l/i confusion)



def totp_of(ex: Exchange, clock: Clock) -> Totp:
    key = b"k" * 44
    return Totp(ex.store, SecretBox(key, "totp-secret"), hashlib.sha256(key).digest(), clock)


async def test_a_code_is_accepted_once_and_an_older_one_never_after(ex: Exchange) -> None:
    clock = Clock()
    t = totp_of(ex, clock)
    mid = await ex.create_member("ann@example.com")
    secret = await t.pending_secret(mid)
    assert await t.pending_secret(mid) == secret  # a reload shows the same QR code
    sealed = await ex.store.fetchval("SELECT secret_enc FROM security_totp WHERE member_id = ?", mid)
    assert secret not in sealed  # sealed with the server key
    code = pyotp.TOTP(secret).at(clock.now)
    assert await t.check(mid, code) is Check.WRONG  # not on yet: only the pending check accepts it
    assert await t.check(mid, code, pending=True) is Check.OK
    codes = await t.activate(mid)
    assert len(codes) == RECOVERY_COUNT and len(set(codes)) == RECOVERY_COUNT
    assert await t.enabled(mid)
    assert await t.check(mid, code) is Check.REPLAYED  # the activation code cannot be used again
    clock.now += 30
    newer = pyotp.TOTP(secret).at(clock.now)
    assert await t.check(mid, newer) is Check.OK
    assert await t.check(mid, newer) is Check.REPLAYED
    # the previous step is still inside the ±1 window, but older than the last one used: refused
    assert await t.check(mid, pyotp.TOTP(secret).at(clock.now - 30)) is Check.REPLAYED
    assert await t.check(mid, "000000" if newer != "000000" else "111111") is Check.WRONG


async def test_two_requests_racing_with_one_code_cannot_both_win(ex: Exchange) -> None:
    clock = Clock()
    t = totp_of(ex, clock)
    mid = await ex.create_member("ann@example.com")
    secret = await t.pending_secret(mid)
    assert await t.check(mid, pyotp.TOTP(secret).at(clock.now), pending=True) is Check.OK
    await t.activate(mid)
    clock.now += 30
    code = pyotp.TOTP(secret).at(clock.now)
    results = await asyncio.gather(*(t.check(mid, code) for _ in range(8)))
    assert results.count(Check.OK) == 1 and results.count(Check.REPLAYED) == 7


async def test_recovery_codes_work_once_and_are_stored_hashed(ex: Exchange) -> None:
    clock = Clock()
    t = totp_of(ex, clock)
    mid = await ex.create_member("ann@example.com")
    secret = await t.pending_secret(mid)
    await t.check(mid, pyotp.TOTP(secret).at(clock.now), pending=True)
    codes = await t.activate(mid)
    stored = [r["code_hash"] for r in await ex.store.fetch("SELECT code_hash FROM security_recovery_codes")]
    assert not any(c.replace("-", "") in h for c in codes for h in stored)
    assert await t.use_recovery_code(mid, codes[0].upper())
    assert not await t.use_recovery_code(mid, codes[0])  # single use
    assert await t.recovery_left(mid) == RECOVERY_COUNT - 1
    other = await ex.create_member("bob@example.com")
    assert not await t.use_recovery_code(other, codes[1])  # codes are per member
    fresh = await t.new_recovery_codes(mid)
    assert not await t.use_recovery_code(mid, codes[1])  # the old set is void
    assert await t.use_recovery_code(mid, fresh[0])
    assert await t.disable(mid) and not await t.enabled(mid) and await t.recovery_left(mid) == 0


async def test_the_audit_log_is_a_chain_that_shows_tampering(ex: Exchange) -> None:
    ann = await ex.create_member("ann@example.com")
    bob = await ex.create_member("bob@example.com")
    await asyncio.gather(*(audit.record(ex.store, audit.LOGIN, ann if i % 2 else bob, {"i": i}) for i in range(20)))
    report = await audit.verify_chain(ex.store)
    assert report.ok and report.entries == 20
    mine = await audit.of_member(ex.store, ann)
    assert len(mine) == 10 and {e["member_id"] for e in mine} == {ann}
    assert [e["seq"] for e in mine] == sorted((e["seq"] for e in mine), reverse=True)
    assert len(await audit.search(ex.store, action="login", limit=500)) == 20
    assert len(await audit.search(ex.store, action="log.", limit=500)) == 0
    # an entry edited afterwards, one deleted, or the newest ones removed: each is found
    await ex.store.execute("UPDATE audit_log SET ip = '10.6.6.6' WHERE seq = 7")
    assert (await audit.verify_chain(ex.store)).broken_at == 7
    await ex.store.execute("UPDATE audit_log SET ip = '' WHERE seq = 7")
    assert (await audit.verify_chain(ex.store)).ok
    await ex.store.execute("DELETE FROM audit_log WHERE seq = 12")
    assert (await audit.verify_chain(ex.store)).broken_at == 12
