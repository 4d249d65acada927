"""Tokens from the local Sigstore's OIDC issuer, oidc-provider-mock (a maintained test provider on PyPI).

The issuer signs whatever identity it is asked for: that is the point of a workshop issuer, and
why it only ever listens on loopback. A token is got as a browser would get one: the identity's
claims are set (``email_verified`` is required by Fulcio and cosign alike), the authorization form
is submitted for it, and the code is exchanged. The audience is ``sigstore``, the client ID Fulcio
and every Sigstore client expect.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import parse_qs, quote, urlparse

import httpx

from labkit.errors import LabError, UsageError

CLIENT_ID = "sigstore"
REDIRECT = "http://127.0.0.1/callback"  # never visited: the code is read from the redirect itself
EMAIL = re.compile(r"^[^@\s/]+@[^@\s/]+\.[^@\s/]+$")


def token(issuer: str, email: str, *, timeout: float = 10.0) -> str:
    """An ID token from ``issuer`` for the workshop identity ``email`` (audience ``sigstore``)."""
    if not EMAIL.match(email):
        raise UsageError(f"{email!r} is not an email address", hint="a workshop identity looks like alice@example.com")
    try:
        with httpx.Client(base_url=issuer, timeout=timeout, trust_env=False) as client:
            client.put(f"/users/{quote(email, safe='@')}",
                       json={"email": email, "email_verified": True}).raise_for_status()
            state = secrets.token_urlsafe(8)
            code_response = client.post("/oauth2/authorize", data={"sub": email}, params={
                "client_id": CLIENT_ID, "redirect_uri": REDIRECT, "response_type": "code",
                "scope": "openid email", "state": state, "nonce": secrets.token_urlsafe(8)})
            query = parse_qs(urlparse(code_response.headers.get("location", "")).query)
            if query.get("state") != [state] or "code" not in query:
                raise LabError(f"the OIDC issuer at {issuer} issued no authorization code "
                               f"(HTTP {code_response.status_code})", hint="see logs/sigstore-oidc.log")
            issued = client.post("/oauth2/token", data={
                "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT,
                "client_id": CLIENT_ID, "client_secret": "labkit"})  # the mock takes any secret
            issued.raise_for_status()
            id_token = issued.json().get("id_token")
    except httpx.HTTPError as exc:
        raise LabError(f"the OIDC issuer at {issuer} did not answer: {exc}",
                       hint="is the lab's Sigstore running? `labkit lab status`; start it with "
                            "`labkit lab up --sigstore`") from None
    if not isinstance(id_token, str):
        raise LabError(f"the OIDC issuer at {issuer} returned no ID token", hint="see logs/sigstore-oidc.log")
    return id_token
