"""Who is asking: on Google Cloud, the identity Identity-Aware Proxy signed into ``X-Goog-IAP-JWT-Assertion``,
verified here (signature with IAP's public keys, audience, issuer, expiry) and never taken on trust; on the local
cloud, the person running it. Any other configuration refuses every request (fail closed)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

IAP_HEADER = "X-Goog-IAP-JWT-Assertion"
IAP_ISSUER = "https://cloud.google.com/iap"
IAP_KEYS_URL = "https://www.gstatic.com/iap/verify/public_key"   # {key id: PEM public key}
KEYS_TTL = 3600.0


class Unauthenticated(Exception):
    """No verified identity: the message says what is missing (never the token)."""


def fetch_iap_keys() -> dict[str, str]:
    import requests

    response = requests.get(IAP_KEYS_URL, timeout=10)
    response.raise_for_status()
    keys = response.json()
    if not isinstance(keys, dict) or not keys:
        raise Unauthenticated("IAP's public keys could not be read")
    return {str(k): str(v) for k, v in keys.items()}


class IapVerifier:
    """Verifies IAP's signed header against ``audience`` (``/projects/NUMBER/global/backendServices/ID``: the
    console's backend service behind its load balancer); IAP's public keys are fetched once an hour."""

    def __init__(self, audience: str, keys: Callable[[], dict[str, str]] = fetch_iap_keys) -> None:
        if not audience:
            raise ValueError("an IAP audience is required")
        self.audience = audience
        self._fetch = keys
        self._keys: dict[str, str] = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    def keys(self) -> dict[str, str]:
        with self._lock:
            if not self._keys or time.monotonic() - self._fetched > KEYS_TTL:
                self._keys, self._fetched = self._fetch(), time.monotonic()
            return self._keys

    def identity(self, assertion: str | None) -> str:
        from google.auth import exceptions, jwt

        if not assertion:
            raise Unauthenticated(f"no {IAP_HEADER} header: the console is reached through Identity-Aware Proxy")
        try:
            header = jwt.decode_header(assertion)
        except (ValueError, exceptions.GoogleAuthError) as exc:
            raise Unauthenticated(f"the IAP assertion is malformed ({type(exc).__name__})") from None
        if header.get("alg") != "ES256":
            raise Unauthenticated(f"the IAP assertion is not signed with ES256 (alg {header.get('alg')!r})")
        try:
            claims: dict[str, Any] = jwt.decode(assertion, certs=self.keys(), audience=self.audience)
        except (ValueError, exceptions.GoogleAuthError) as exc:
            raise Unauthenticated(f"the IAP assertion does not verify: {exc}"[:300]) from None
        if claims.get("iss") != IAP_ISSUER:
            raise Unauthenticated(f"the assertion's issuer is {claims.get('iss')!r}, not IAP")
        email = claims.get("email")
        if not email:
            raise Unauthenticated("the IAP assertion names no e-mail")
        return str(email).removeprefix("accounts.google.com:")
