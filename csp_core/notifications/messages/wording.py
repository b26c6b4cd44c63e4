"""What every e-mail shares: the Email model, its kinds, and the es-MX wording helpers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from csp_core.calendar import (
    MONTHS_ES,
    format_date_es,
    format_datetime_es,
)

ADMIN_CENTER_URL = "https://admin.microsoft.com"
SIGNATURE = "Atentamente,\nEquipo de Licenciamiento Microsoft"


class EmailKind(StrEnum):
    PARTNER_INVITATION = "partner_invitation"
    ACCEPTANCE_REMINDER = "acceptance_reminder"
    ACCEPTANCE_EXPIRED = "acceptance_expired"
    ORDER_ACTIVE = "order_active"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_FAILED = "order_failed"
    RENEWAL_NOTICE = "renewal_notice"
    RENEWAL_REMINDER = "renewal_reminder"
    RENEWAL_ESCALATION = "renewal_escalation"
    RENEWAL_FINAL_NOTICE = "renewal_final_notice"
    RENEWAL_AT_RISK = "renewal_at_risk"
    RENEWAL_SUSPENDED = "renewal_suspended"
    RENEWAL_REACTIVATED = "renewal_reactivated"
    PAYMENT_RECEIVED = "payment_received"
    RENEWAL_PARTIAL_PAYMENT = "renewal_partial_payment"
    RENEWAL_REACTIVATION_FAILED = "renewal_reactivation_failed"
    RENEWAL_SUSPENSION_FAILED = "renewal_suspension_failed"
    SUBSCRIPTION_CANCELLED = "subscription_cancelled"
    SUBSCRIPTION_RENEWED = "subscription_renewed"
    SUBSCRIPTION_EXPIRING = "subscription_expiring"
    SUBSCRIPTION_EXPIRED = "subscription_expired"


# Angle brackets from input (a company name, say) become look-alike quotation marks in
# subjects: some clients render a subject as markup, and a subject is never meant to hold any.
NO_MARKUP = str.maketrans({"<": "‹", ">": "›"})


def one_line(value: str) -> str:
    # Header values must not carry line breaks (header injection, and EmailMessage refuses them).
    return re.sub(r"\s+", " ", value).strip().translate(NO_MARKUP)


def aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(aware)]


class Email(BaseModel):
    """One e-mail ready to send; `key` makes re-sends recognisable (it drives the Message-ID)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: Annotated[str, Field(min_length=1, max_length=200)]
    kind: str
    to: Annotated[list[str], Field(min_length=1)]
    cc: list[str] = []
    subject: Annotated[str, AfterValidator(one_line), Field(min_length=1)]
    text: str
    html: str | None = None

    @field_validator("key", "kind")
    @classmethod
    def _no_line_breaks(cls, value: str) -> str:
        if "\n" in value or "\r" in value:
            raise ValueError("must be a single line")
        return value


# --- wording helpers -------------------------------------------------------------------------

TERMS = {"P1M": "plazo de 1 mes", "P1Y": "plazo de 1 año", "P3Y": "plazo de 3 años"}
CYCLES = {"monthly": "facturación mensual", "annual": "facturación anual"}


def licenses(quantity: int) -> str:
    return "1 licencia" if quantity == 1 else f"{quantity:,} licencias"


def greeting(reseller_name: str) -> str:
    return f"Estimado equipo de {reseller_name}:"


def body(*parts: str) -> str:
    """Paragraphs separated by a blank line, then the signature."""
    return "\n\n".join(part.strip("\n") for part in (*parts, SIGNATURE) if part) + "\n"


def bullets(items: Sequence[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def ordinal(n: int) -> str:
    return f"{n}.º" if n > 0 else str(n)


def last_day_before(cutoff: datetime, tz: ZoneInfo) -> datetime:
    return cutoff.astimezone(tz) - timedelta(microseconds=1)


def cutoff_phrase(cutoff: datetime, tz: ZoneInfo) -> str:
    """'antes del día 26 de diciembre de 2026 (a más tardar el 25 de diciembre de 2026)'."""
    local = aware(cutoff).astimezone(tz)
    if (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0):
        last = last_day_before(cutoff, tz).date()
        return (
            f"antes del día {local.day} de {MONTHS_ES[local.month - 1]} de {local.year} "
            f"(a más tardar el {format_date_es(last)})"
        )
    return f"antes del {format_datetime_es(cutoff, tz)}"


def nce_rules(domain: str) -> str:
    return "Reglas de Microsoft (New Commerce) que conviene tener presentes:\n" + bullets(
        [
            "Puede agregar licencias en cualquier momento; el cargo adicional es proporcional.",
            "Reducir licencias o cancelar la suscripción con reembolso proporcional solo es "
            "posible dentro de los 7 días (168 horas) posteriores a la compra o a la renovación. "
            "Después de ese plazo se factura el plazo completo.",
            f"Las licencias quedan ligadas al dominio {domain} y no pueden transferirse a otro "
            "dominio (tenant). Para usar otro dominio es necesario comprar una suscripción nueva "
            "en él.",
        ]
    )
