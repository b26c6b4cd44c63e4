"""Reading Ingram's answers: error bodies into ProviderError (transient or a refusal), and
success bodies into the SDK's models (a body that does not parse is the provider's fault)."""

from __future__ import annotations

from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from xi.sdk.resellers.models import ErrorResponse, PostCreateorderV7400Response

from csp_core.providers.partner_center import _parse_retry_after
from csp_core.providers.port import ProviderError

M = TypeVar("M", bound=BaseModel)
_MAX_DESCRIPTION = 300


def answer_error(method: str, path: str, response: httpx.Response) -> ProviderError:
    """Ingram's error bodies: {errors: [{id|traceid, type, message}]} or a bare
    {traceid, type, message}. 429, 408 and 5xx are transient; other 4xx are refusals."""
    code = message = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        try:
            if isinstance(body.get("errors"), list):
                first = (ErrorResponse.from_dict(body).errors or [None])[0]
            else:
                first = PostCreateorderV7400Response.from_dict(body)
        except ValidationError:
            first = None
        if first is not None:
            code, message = first.type, first.message
        message = message or body.get("message") or body.get("error_description")
    text = f"Ingram {method} {path} answered {response.status_code}"
    if code:
        text += f" [{code}]"
    if message:
        text += f": {str(message)[:_MAX_DESCRIPTION]}"
    return ProviderError(
        text,
        status=response.status_code,
        code=code or str(response.status_code),
        retry_after_seconds=_parse_retry_after(response.headers.get("Retry-After")),
    )


def parse_answer(model: type[M], response: httpx.Response, method: str, path: str) -> M:
    try:
        return model.model_validate(response.json())
    except (ValueError, ValidationError):
        raise ProviderError(
            f"Ingram {method} {path} answered a body that is not a {model.__name__}",
            status=502,
            code="InvalidResponse",
        ) from None
