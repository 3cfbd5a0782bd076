"""Calendar invitations by email: NeetoCal's ``send_calendar_invite_to_anyone`` action.

Each action names the recipients (``emails``), a subject and an HTML body, and the
invitation's own subject and body, all templates with the NeetoCal variables. HTML is
reduced to the tags NeetoCal allows (h1 to h5, br, strong, em, a, s, code, u, ul, ol, li, p,
span). The mail is ``multipart/alternative``: plain text, HTML, and
``text/calendar; method=REQUEST`` (``CANCEL`` once the booking is cancelled, same UID,
higher SEQUENCE), sent over SMTP with STARTTLS or TLS and authentication as configured.
Its Message-ID is the delivery id, the same across retries.
"""

from __future__ import annotations

import re
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses
from html import unescape
from typing import Any, Literal

import aiosmtplib
import nh3
from pydantic import ConfigDict, Field, SecretStr, field_validator

from hub import hookimpl
from hub.connector import (
    ActionConfig,
    Delivery,
    DeliveryResult,
    DestinationConfig,
    DestinationConnector,
)
from hub.errors import PermanentDelivery, RetryableDelivery
from hub.ics import invitation
from hub.model import NOTIFICATION_TYPES, BookingEvent, Person
from hub.templates import Template, TemplateFailed, compile_template

ALLOWED_TAGS = {
    "h1", "h2", "h3", "h4", "h5", "br", "strong", "em", "a", "s", "code", "u", "ul", "ol",
    "li", "p", "span",
}  # fmt: skip


def sanitize(html: str) -> str:
    """HTML with only the tags NeetoCal allows (and links' href)."""
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes={"a": {"href"}})


_MARKUP = re.compile(r"<[^<>]*>")


def plain_text(html: str) -> str:
    """The text of sanitized HTML. Markup that a value carried in escaped (a booker's name,
    say) is dropped once unescaped, so it reaches neither the text part nor the ICS."""
    text = nh3.clean(html.replace("<br>", "\n").replace("</p>", "</p>\n"), tags=set())
    return _MARKUP.sub("", unescape(text)).strip()


def _one_address(text: str) -> str:
    """An address a template made, refused unless it is exactly one, on one line."""
    found = getaddresses([text])
    if _breaks_line(text) or len(found) != 1 or "@" not in found[0][1]:
        # the value itself stays out: it is personal data, and this reason is logged
        raise PermanentDelivery("a recipient template made something that is not one email address")
    return found[0][1]


# Every character str.splitlines() breaks at: the email package refuses each in a header.
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def _breaks_line(text: str) -> bool:
    return not LINE_BREAKS.isdisjoint(text)


def _one_line(text: str, what: str) -> str:
    if _breaks_line(text):
        raise PermanentDelivery(f"the {what} spans several lines")
    return text


class EmailInviteConfig(DestinationConfig):
    host: str = Field(description="SMTP server")
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="STARTTLS on a plain connection, TLS from the start, or none"
    )
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(description="From: address")
    sender_name: str | None = Field(None, description="From: display name")
    verify_tls: bool = Field(True, description="Check the server's certificate")


class EmailInviteAction(ActionConfig):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    emails: list[Template] = Field(min_length=1, description="Recipients, templates allowed")
    email_subject: Template
    email_body: Template = Field(description="HTML; tags outside NeetoCal's list are removed")
    calendar_invite_subject: Template
    calendar_invite_body: Template

    @field_validator("emails", "email_subject", "calendar_invite_subject", mode="before")
    @classmethod
    def _templates(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [compile_template(v) if isinstance(v, str) else v for v in value]
        return compile_template(value) if isinstance(value, str) else value

    @field_validator("email_body", "calendar_invite_body", mode="before")
    @classmethod
    def _html_templates(cls, value: Any) -> Any:
        return compile_template(value, html=True) if isinstance(value, str) else value


class EmailInvite(DestinationConnector):
    name = "email_invite"
    config_model = EmailInviteConfig
    action_model = EmailInviteAction
    config: EmailInviteConfig

    @classmethod
    def unsupported(cls, event_type: str, action: EmailInviteAction) -> str | None:  # type: ignore[override]
        if event_type == "invite_replied" or event_type in NOTIFICATION_TYPES:
            return "an invitation needs a booking, and this event carries none"
        return None

    def plan(self, event: BookingEvent, action: EmailInviteAction) -> list[dict[str, Any]]:  # type: ignore[override]
        dumped = action.model_dump(exclude={"to"})
        return [
            {
                name: [t.source for t in value] if isinstance(value, list) else value.source
                for name, value in dumped.items()
            }
        ]

    def compose(self, delivery: Delivery) -> EmailMessage:
        """The mail for one delivery."""
        event = delivery.event
        booking = event.booking
        if booking is None:
            raise PermanentDelivery(f"an invitation needs a booking; {event.type} has none")
        action = EmailInviteAction.model_validate({"to": self.destination, **delivery.message})
        try:
            rendered = [t.render(event).strip() for t in action.emails]
            recipients = list(dict.fromkeys(_one_address(r) for r in rendered if r))
            subject = _one_line(action.email_subject.render(event), "subject")
            html = sanitize(action.email_body.render(event))
            summary = _one_line(action.calendar_invite_subject.render(event), "invite subject")
            description = plain_text(action.calendar_invite_body.render(event))
        except TemplateFailed as error:
            raise PermanentDelivery(f"a template of the route failed: {error}") from error
        if not recipients:
            raise PermanentDelivery("the action's emails name no recipient for this booking")
        now = datetime.fromtimestamp(self.context.clock.now(), UTC)
        invited = booking.model_copy(
            update={"guests": [*booking.guests, *(Person(email=r) for r in recipients)]}
        )
        sender = Person(name=self.config.sender_name, email=self.config.sender)
        ics = invitation(
            invited, stamp=now, summary=summary, description=description, organizer=sender
        )
        method = "CANCEL" if booking.status == "cancelled" else "REQUEST"

        message = EmailMessage()
        message["From"] = formataddr((self.config.sender_name or "", self.config.sender))
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message["Date"] = format_datetime(now)
        message["Message-ID"] = f"<{delivery.id}@hub>"
        message.set_content(plain_text(html) or subject)
        message.add_alternative(html, subtype="html")
        message.add_alternative(ics.decode(), subtype="calendar", params={"method": method})
        return message

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        message = self.compose(delivery)
        config = self.config
        context = ssl.create_default_context()
        if not config.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            errors, response = await aiosmtplib.send(
                message,
                hostname=config.host,
                port=config.port,
                username=config.username,
                password=config.password.get_secret_value() if config.password else None,
                use_tls=config.security == "tls",
                start_tls=config.security == "starttls",
                tls_context=context,
                timeout=config.timeout.total_seconds(),
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            refused = "; ".join(str(r) for r in error.recipients)
            raise PermanentDelivery(f"every recipient was refused: {refused}") from error
        except aiosmtplib.SMTPResponseException as error:
            detail = f"{config.host} answered {error.code}: {error.message}"
            if 500 <= error.code < 600:
                raise PermanentDelivery(detail, status=error.code) from error
            raise RetryableDelivery(detail, status=error.code) from error
        except (aiosmtplib.SMTPException, OSError) as error:
            raise RetryableDelivery(f"{type(error).__name__}: {error}") from error
        # Some recipients refused, the others got it: a retry would send it to them again.
        refused = ", ".join(f"{who} ({code} {text})" for who, (code, text) in errors.items())
        return DeliveryResult(
            status=250, response=f"{response}; refused: {refused}" if errors else response
        )


@hookimpl
def register_destinations() -> list[type[DestinationConnector]]:
    return [EmailInvite]
