"""The bank family, for fiat: transfers a person makes and checks, not a daemon.

A member's "deposit address" is a reference code to put on the transfer; the member sees it with
the exchange's bank account. An admin who sees the money arrive confirms the deposit with the
bank's own reference, which credits it exactly once. A withdrawal's "address" is the member's bank
account; an admin makes the transfer and reports it done with the bank's reference.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, ClassVar

from node.wallet.channel import AddressCheck, Channel, SettingsError

# No 0/O/1/I/L: codes are read aloud and typed from bank statements.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LEN = 10
MAX_ACCOUNT = 140  # an IBAN is 34; leave room for "name, bank, account" in one line


DETAILS = ("bank_name", "account_holder", "account_number", "swift", "bank_address")  # shown to members


class BankChannel(Channel):
    family = "bank"
    kinds = ("fiat",)
    automatic = False
    scans = False
    settings: ClassVar[dict[str, tuple[bool, str]]] = {
        "bank_name": (True, "the exchange's bank"),
        "account_holder": (True, "the account holder's name, as on the account"),
        "account_number": (True, "IBAN or account number members transfer to"),
        "swift": (False, "SWIFT/BIC or routing code"),
        "bank_address": (False, "the bank's address"),
        "reference_prefix": (False, "letters put in front of every member reference code (default: none)"),
    }

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> None:
        super().check_settings(settings)
        for key, value in settings.items():
            if not isinstance(value, str) or not value.strip() or not value.isprintable() or len(value) > 200:
                raise SettingsError(f"{key}: must be a non-empty line of printable text (at most 200 characters)")
        prefix = settings.get("reference_prefix", "")
        if prefix and not (prefix.isalnum() and prefix.isascii() and len(prefix) <= 6):
            raise SettingsError("reference_prefix: at most 6 ASCII letters or digits")

    def details(self) -> dict[str, str]:
        """What the member is shown: where to send the money."""
        return {k: str(self.options[k]) for k in DETAILS if k in self.options}

    async def new_address(self, member_id: int) -> str:
        """A fresh reference code, random so that one member cannot guess another's."""
        code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LEN))
        return str(self.options.get("reference_prefix", "")).upper() + code

    async def validate_address(self, address: str) -> AddressCheck:
        """A bank account is free text for the admin who makes the transfer; refuse only what is
        clearly not one, and the exchange's own account."""
        text = " ".join(address.split())
        valid = 5 <= len(text) <= MAX_ACCOUNT and text.isprintable() and any(c.isalnum() for c in text)
        own = "".join(str(self.options.get("account_number", "")).split()).upper()
        mine = valid and bool(own) and own in "".join(text.split()).upper()
        return AddressCheck(valid=valid, mine=mine)
