"""The sandbox's Azure AD face: what MSAL needs to turn a refresh token into access tokens.

Partner Center's App+User tokens come from Azure AD (login.microsoftonline.com/{tenant}):
MSAL reads the authority's OpenID configuration, then posts grant_type=refresh_token with the
app's client id and secret to the token endpoint. This face answers both for any tenant path,
checks the client credentials, the refresh token and the Partner Center scope, and issues
access tokens that the Partner Center face accepts until they expire (TTL configurable; the
control POST /sandbox/partner-center/expire-tokens ends them all now, as a mid-run expiry).
Each answer carries a rotated refresh token; every refresh token issued stays valid.

MSAL only talks https to an authority: the sandbox must then be served over TLS (its own CA,
sandbox/tls.py) for PROVIDER=partner_center to sign in here.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

# Scopes naming the Partner Center API (v2 ".default", or the delegated permission).
PARTNER_CENTER_SCOPES = frozenset(
    {
        "https://api.partnercenter.microsoft.com/.default",
        "https://api.partnercenter.microsoft.com/user_impersonation",
    }
)


class LoginFace:
    def __init__(
        self, *, client_id: str, client_secret: str, refresh_token: str, token_ttl_seconds: float
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl_seconds
        self._lock = threading.Lock()
        self._refresh_tokens = {refresh_token}
        self._tokens: dict[str, float] = {}  # access token -> monotonic expiry (memory only)
        self.tokens_issued = 0
        # API calls that came with an access token of this face that had expired (or was
        # expired by the control): each is a 401 the client had to get past.
        self.tokens_refused = 0

    def issue(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != "refresh_token":
            return _aad_error(400, "unsupported_grant_type", "AADSTS70003", "Use refresh_token.")
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return _aad_error(401, "invalid_client", "AADSTS7000215", "Invalid client secret.")
        scopes = set((form.get("scope") or "").split())
        if not scopes & PARTNER_CENTER_SCOPES:
            return _aad_error(400, "invalid_scope", "AADSTS70011", "The scope is not valid.")
        with self._lock:
            if form.get("refresh_token") not in self._refresh_tokens:
                return _aad_error(
                    400, "invalid_grant", "AADSTS700082", "The refresh token has expired."
                )
            token, rotated = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
            self._tokens[token] = time.monotonic() + self.token_ttl
            self._refresh_tokens.add(rotated)
            self.tokens_issued += 1
        ttl = max(1, int(self.token_ttl))  # never longer than the token really lives
        return 200, {
            "token_type": "Bearer",
            "scope": "https://api.partnercenter.microsoft.com/user_impersonation",
            "expires_in": ttl,
            "ext_expires_in": ttl,
            "access_token": token,
            "refresh_token": rotated,
        }

    def check(self, token: str) -> bool | None:
        """True: a valid token of this face; False: one of its tokens, expired; None: not one
        of its tokens."""
        with self._lock:
            expires = self._tokens.get(token)
            if expires is None:
                return None
            if time.monotonic() < expires:
                return True
            self.tokens_refused += 1
            return False

    def expire_tokens(self) -> int:
        with self._lock:
            now = time.monotonic()
            live = [token for token, expires in self._tokens.items() if expires > now]
            for token in live:
                self._tokens[token] = now
            return len(live)

    def summary(self) -> dict[str, int]:
        with self._lock:
            return {"tokens_issued": self.tokens_issued, "tokens_refused": self.tokens_refused}


def _aad_error(status: int, error: str, code: str, text: str) -> tuple[int, dict[str, Any]]:
    number = int(code.removeprefix("AADSTS"))
    return status, {
        "error": error,
        "error_description": f"{code}: {text}",
        "error_codes": [number],
    }


def router(face: LoginFace) -> APIRouter:
    api = APIRouter()

    @api.get("/{tenant}/v2.0/.well-known/openid-configuration")
    async def openid_configuration(request: Request, tenant: str) -> dict[str, Any]:
        base = f"{request.url.scheme}://{request.url.netloc}/{tenant}"
        return {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        }

    @api.post("/{tenant}/oauth2/v2.0/token")
    async def token(request: Request, tenant: str) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        status, body = face.issue(form)
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    @api.post("/sandbox/partner-center/expire-tokens")
    async def expire_tokens() -> dict[str, int]:
        """Every access token issued so far stops working now (a token expiring mid-run)."""
        return {"expired": face.expire_tokens()}

    @api.get("/sandbox/partner-center/sign-in")
    async def sign_in() -> dict[str, int]:
        """Access tokens issued, and API calls refused for an expired one."""
        return face.summary()

    return api


__all__ = ["PARTNER_CENTER_SCOPES", "LoginFace", "router"]
