"""Outgoing e-mail: activation links, password resets, notices to members.

One small interface (`Mailer.send`) with two implementations: `SmtpMailer` talks real SMTP with
aiosmtplib to the server of cluster.toml's `[mail]` table, and `LogMailer`, the development default
when no server is configured, writes the whole mail to the log so a developer can click the link.

Sending is awaited by the caller with a timeout (the mail server's answer tells whether the mail was
accepted), and a failure raises `MailError` instead of taking the page down: the member is told the
mail could not be sent and can ask for it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Protocol

import aiosmtplib

from node.config import MailConf

log = logging.getLogger(__name__)


class MailError(Exception):
    """The mail server could not be reached or refused the mail; nothing was sent."""


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str


class Mailer(Protocol):
    async def send(self, mail: Mail) -> None: ...


def build_message(sender: str, mail: Mail) -> EmailMessage:
    """A plain-text UTF-8 message (Chinese subjects are encoded by the email package)."""
    import datetime as dt

    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = mail.to
    msg["Subject"] = mail.subject
    msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    msg["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].strip("> ") or "localhost")
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(mail.text)
    return msg


class LogMailer:
    """Development default: the mail goes to the log instead of a server."""

    def __init__(self, sender: str) -> None:
        self.sender = sender

    async def send(self, mail: Mail) -> None:
        log.info("mail (no [mail] server configured, printed instead)\nFrom: %s\nTo: %s\nSubject: %s\n\n%s",
                 self.sender, mail.to, mail.subject, mail.text)


class SmtpMailer:
    """Real SMTP with aiosmtplib: implicit TLS, STARTTLS or plain (a local relay)."""

    def __init__(self, conf: MailConf) -> None:
        self.conf = conf

    async def send(self, mail: Mail) -> None:
        c = self.conf
        try:
            await aiosmtplib.send(
                build_message(c.sender, mail),
                hostname=c.host,
                port=c.port,
                username=c.username or None,
                password=c.password or None,
                use_tls=c.security == "tls",
                start_tls=c.security == "starttls",
                timeout=c.timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            # The recipient is not logged: addresses are personal data and logs travel far.
            log.error("mail %r could not be sent through %s:%d: %s", mail.subject, c.host, c.port, e)
            raise MailError(str(e)) from e


def mailer_from(conf: MailConf) -> Mailer:
    return SmtpMailer(conf) if conf.host else LogMailer(conf.sender)
