"""SMS codes: phone numbers in E.164, the Twilio-shaped gateway against a local stand-in at the wire
level, the log gateway, the `[sms]` / `[security]` tables, and the codes in the store (both backends)."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

from node.config import ConfigError
from node.config.security import SmsConf
from node.exchange import Exchange
from node.security.sms import (
    AUTH,
    MAX_TRIES,
    VERIFY,
    LogSmsGateway,
    Sms,
    SmsError,
    TwilioGateway,
    gateway_from,
    mask,
    normalise_phone,
)
from node.web.i18n import FormError
from tests.conftest import Clock, config_with
from tests.security_site import SID, TOKEN, TOKEN_ENV, FakeTwilio


@pytest.mark.parametrize(("raw", "e164"), [
    ("+44 7400 123456", "+447400123456"), ("0044 7400 123456", "+447400123456"), ("+1 (201) 555-0123", "+12015550123"),
    ("+86 138 0013 8000", "+8613800138000"), ("+49 1512 3456789", "+4915123456789")])
def test_numbers_are_stored_in_e164(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == e164


@pytest.mark.parametrize(("raw", "message"), [
    ("", "Please enter"), ("07400 123456", "country code"), ("+44 7400 12345", "not a valid"),
    ("+1 800 555 0199", "cannot receive text messages"), ("+44 20 7946 0000", "cannot receive text messages"),
    ("+" + "1" * 40, "Too long"), ("call me maybe", "country code")])
def test_bad_numbers_are_refused_with_a_reason(raw: str, message: str) -> None:
    with pytest.raises(FormError) as e:
        normalise_phone(raw)
    assert e.value.field == "phone" and message in e.value.message


def test_a_number_is_masked_for_display() -> None:
    assert mask("+447400123456") == "+44••••••••56"


async def test_the_twilio_gateway_speaks_twilios_wire_format(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    twilio = FakeTwilio()
    base = await twilio.start()
    try:
        gw = TwilioGateway(SID, TOKEN, "+15005550006", base_url=base)
        await gw.send("+447400123456", "123456 is your code")
        assert twilio.messages == [{"To": "+447400123456", "From": "+15005550006", "Body": "123456 is your code"}]
        import base64

        assert twilio.auth[-1] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        await gw.close()
        gw = TwilioGateway(SID, TOKEN, messaging_service_sid="MG0123456789", base_url=base)
        await gw.send("+447400123456", "654321 is your code")
        assert twilio.messages[-1] == {"To": "+447400123456", "MessagingServiceSid": "MG0123456789",
                                       "Body": "654321 is your code"}
        await gw.close()
        for bad in (TwilioGateway(SID, "wrong-token", "+15005550006", base_url=base),
                    TwilioGateway("AC0000000000", TOKEN, "+15005550006", base_url=base)):
            with pytest.raises(SmsError, match="refused"):
                await bad.send("+447400123456", "999999 is your code")
            await bad.close()
        twilio.fail = (400, {"code": 21211, "message": "The 'To' number +447400123456 is not valid.", "status": 400})
        gw = TwilioGateway(SID, TOKEN, "+15005550006", base_url=base)
        with pytest.raises(SmsError, match="code 21211"):
            await gw.send("+447400123456", "777777 is your code")
        await gw.close()
    finally:
        await twilio.close()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    gw = TwilioGateway(SID, TOKEN, "+15005550006", base_url=dead, timeout=2)
    with pytest.raises(SmsError, match="cannot be reached"):
        await gw.send("+447400123456", "888888 is your code")
    await gw.close()
    for secret in (TOKEN, "999999", "777777", "888888"):
        assert secret not in caplog.text


async def test_gateways_from_the_configuration(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    gw = gateway_from(SmsConf())
    assert isinstance(gw, LogSmsGateway)
    await gw.send("+447400123456", "424242 is your code")
    assert "424242" in caplog.text and "+447400123456" not in caplog.text  # the dev default shows the code
    conf = config_with("sqlite:///x.db", sms={"provider": "twilio", "account_sid": SID, "auth_token_env": TOKEN_ENV,
                                              "from": "+15005550006"}).sms
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"sms.auth_token_env: the environment variable {TOKEN_ENV} is not set"):
        gateway_from(conf)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert isinstance(gateway_from(conf), TwilioGateway)


@pytest.mark.parametrize(("tables", "message"), [
    ({"sms": {"provider": "carrier-pigeon"}}, "sms.provider: must be one of log, twilio"),
    ({"sms": {"provider": "twilio", "account_sid": "nope", "from": "+15005550006"}}, "sms.account_sid"),
    ({"sms": {"provider": "twilio", "account_sid": SID}}, "sms.from: the sending number"),
    ({"sms": {"provider": "twilio", "account_sid": SID, "from": "555-0100"}}, "sms.from: '555-0100' is not"),
    ({"sms": {"auth_token_env": "s3cr3t token!"}}, "sms.auth_token_env: the name of an environment variable"),
    ({"sms": {"token": "x"}}, "sms.token: unknown key"),
    ({"security": {"withdraw_hold_hour": 1}}, "security.withdraw_hold_hour: unknown key"),
    ({"security": {"login_max_failures": 0}}, "security.login_max_failures: must be between 1 and 1000"),
    ({"security": {"withdraw_confirmation": "yes"}}, "security.withdraw_confirmation: expected bool"),
])
def test_config_errors_name_the_field(tables: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        config_with("sqlite:///x.db", **tables)
    assert message in str(e.value)


class Outbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, body: str) -> None:
        self.sent.append((to, body))

    async def close(self) -> None:
        return None

    def code(self) -> str:
        return self.sent[-1][1][:6]



async def test_codes_are_single_use_short_lived_hashed_and_throttled(ex: Exchange) -> None:
    clock, box = Clock(), Outbox()
    sms = Sms(ex.store, box, SmsConf(), b"pepper" * 6, "PyExchange", clock)
    mid = await ex.create_member("ann@example.com")
    assert await sms.start(mid, "+44 7400 123456") == "+447400123456"
    assert box.sent[-1][0] == "+447400123456" and "PyExchange security code" in box.sent[-1][1]
    setup = box.code()
    stored = await ex.store.fetchval("SELECT code_hash FROM security_sms_codes")
    assert setup not in stored and len(stored) == 64
    assert not await sms.enabled(mid)
    with pytest.raises(FormError, match="another in 60 seconds"):
        await sms.start(mid, "+44 7400 123456")
    assert await sms.confirm(mid, setup) == "+447400123456" and await sms.enabled(mid)
    with pytest.raises(FormError):
        await sms.confirm(mid, setup)  # single use
    clock.now += 60
    await sms.send_auth_code(mid)
    auth = box.code()
    assert await sms.check(mid, VERIFY, auth) is None  # a code is for one purpose
    assert await sms.check(mid, AUTH, auth) == "+447400123456"
    assert await sms.check(mid, AUTH, auth) is None
    # five wrong tries kill a code; a late one is dead too
    clock.now += 60
    await sms.send_auth_code(mid)
    good = box.code()
    for _ in range(MAX_TRIES):
        assert await sms.check(mid, AUTH, "000000" if good != "000000" else "111111") is None
    assert await sms.check(mid, AUTH, good) is None
    clock.now += 60
    await sms.send_auth_code(mid)
    late = box.code()
    clock.now += 301
    assert await sms.check(mid, AUTH, late) is None
    # a newer code voids the older one
    await sms.send_auth_code(mid)
    older = box.code()
    clock.now += 60
    await sms.send_auth_code(mid)
    assert await sms.check(mid, AUTH, older) is None and await sms.check(mid, AUTH, box.code()) is not None
    # at most max_per_hour codes in an hour
    sent = len(box.sent)
    with pytest.raises(FormError, match="Too many codes"):
        for _ in range(10):
            clock.now += 61
            await sms.send_auth_code(mid)
    assert len(box.sent) - sent < 10
    assert await sms.disable(mid) and not await sms.enabled(mid)
    with pytest.raises(FormError, match="not set up"):
        await sms.send_auth_code(mid)


def test_the_security_md_example_parses() -> None:
    """SECURITY.md's configuration example is valid (docs that drift are worse than none)."""
    import re
    import tomllib
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "SECURITY.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S)
    assert block
    tables = tomllib.loads(block.group(1))
    config = config_with("sqlite:///x.db", **tables)
    assert config.security.withdraw_hold_hours == 24 and config.sms.provider == "twilio"
    assert config.sms.auth_token_env == "TWILIO_AUTH_TOKEN"
