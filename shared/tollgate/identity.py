"""Who is calling: an identity read only from a token whose signature, issuer, audience and expiry were verified —
never from a request's body, and never from a token merely decoded.

One :class:`Verifier` serves every entry point that records a person:

- the ``review`` function takes a Google-signed ID token (``Authorization: Bearer``) for its own URL: RS256,
  issued by ``accounts.google.com``, keys from Google's certificate endpoint (:func:`google_id_tokens`);
- the console takes Identity-Aware Proxy's signed header: ES256, issued by ``https://cloud.google.com/iap``
  (:func:`iap`);
- on the local cloud, the review function takes ID tokens the local cloud signs with its own key
  (:class:`LocalIssuer`, ``tollgate review token``), checked by the same code against that key: an approval is
  recorded under the name the token was signed for, and nothing a caller writes in a request changes it.

A token is accepted only for the URL the request was sent to (a service account's ID token names it) or an
audience the deployment adds (``TOLLGATE_ID_AUDIENCES``: the gcloud CLI's, for people's own tokens). A verifier
with no key or no audience to verify against refuses every request (fail closed).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import orjson

GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"   # {key id: PEM certificate}
IAP_ISSUERS = ("https://cloud.google.com/iap",)
IAP_KEYS_URL = "https://www.gstatic.com/iap/verify/public_key"    # {key id: PEM public key}
LOCAL_ISSUER = "https://tollgate.local"                          # the local cloud's own issuer
KEYS_TTL = 3600.0
LOCAL_TOKEN_SECONDS = 3600


class Unauthenticated(Exception):
    """No verified identity: the message says what is missing or wrong (never the token itself)."""


def fetch_keys(url: str) -> Callable[[], dict[str, str]]:
    """A function reading ``{key id: PEM}`` from ``url`` (Google's and IAP's published keys)."""
    def fetch() -> dict[str, str]:
        import requests

        response = requests.get(url, timeout=10)
        response.raise_for_status()
        keys = response.json()
        if not isinstance(keys, dict) or not keys:
            raise Unauthenticated(f"the signing keys at {url} could not be read")
        return {str(k): str(v) for k, v in keys.items()}
    return fetch


class Verifier:
    """Verifies a signed JWT from one of ``issuers`` with ``algorithm`` (keys read by ``keys()``, cached for an
    hour) for one of ``audiences`` — those it was made with and those a request adds (the URL it was sent to);
    ``identity(token)`` is the verified e-mail."""

    def __init__(self, issuers: tuple[str, ...], keys: Callable[[], dict[str, str]], algorithm: str, what: str,
                 audiences: tuple[str, ...] = ()) -> None:
        self.issuers, self.algorithm, self.what = issuers, algorithm, what
        self.audiences = tuple(a for a in audiences if a)
        self._fetch = keys
        self._keys: dict[str, str] = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    def keys(self) -> dict[str, str]:
        with self._lock:
            if not self._keys or time.monotonic() - self._fetched > KEYS_TTL:
                self._keys, self._fetched = self._fetch(), time.monotonic()
            return self._keys

    def identity(self, token: str | None, audiences: tuple[str, ...] = ()) -> str:
        from google.auth import exceptions, jwt

        accepted = list(dict.fromkeys(self.audiences + tuple(a for a in audiences if a)))
        if not accepted:
            raise Unauthenticated(f"no audience to verify the {self.what} for")
        if not token:
            raise Unauthenticated(f"no {self.what}")
        try:
            header = jwt.decode_header(token)
        except (ValueError, exceptions.GoogleAuthError) as exc:
            raise Unauthenticated(f"the {self.what} is malformed ({type(exc).__name__})") from None
        if header.get("alg") != self.algorithm:
            raise Unauthenticated(f"the {self.what} is not signed with {self.algorithm} (alg {header.get('alg')!r})")
        try:
            claims: dict[str, Any] = jwt.decode(token, certs=self.keys(), audience=accepted)
        except (ValueError, exceptions.GoogleAuthError) as exc:
            raise Unauthenticated(f"the {self.what} does not verify: {exc}"[:300]) from None
        if claims.get("iss") not in self.issuers:
            raise Unauthenticated(f"the {self.what} was issued by {claims.get('iss')!r}, not by "
                                  f"{' or '.join(self.issuers)}")
        email = claims.get("email")
        if not email or claims.get("email_verified") is False:
            raise Unauthenticated(f"the {self.what} names no verified e-mail")
        return str(email).removeprefix("accounts.google.com:")


# The OAuth client of the gcloud CLI: a user's `gcloud auth print-identity-token` is for this audience, which
# Cloud Run IAM accepts for users (a service account's tokens name the function's URL instead).
GCLOUD_AUDIENCE = "32555940559.apps.googleusercontent.com"


def google_id_tokens(audiences: tuple[str, ...] = ()) -> Verifier:
    """Google-signed ID tokens (a service account's credentials, ``gcloud auth print-identity-token``)."""
    return Verifier(GOOGLE_ISSUERS, fetch_keys(GOOGLE_CERTS_URL), "RS256", "Google ID token", audiences)


def iap(audience: str, keys: Callable[[], dict[str, str]] | None = None) -> Verifier:
    """Identity-Aware Proxy's signed header for ``audience`` (``/projects/NUMBER/global/backendServices/ID``)."""
    if not audience:
        raise ValueError("an IAP audience is required")
    return Verifier(IAP_ISSUERS, keys or fetch_keys(IAP_KEYS_URL), "ES256", "IAP assertion", (audience,))


def local_tokens(public_keys: dict[str, str], audiences: tuple[str, ...] = ()) -> Verifier:
    """ID tokens the local cloud signed (:class:`LocalIssuer`)."""
    return Verifier((LOCAL_ISSUER,), lambda: dict(public_keys), "RS256", "local ID token", audiences)


class LocalIssuer:
    """The local cloud's stand-in for Google's token service: an RSA key that signs ID tokens naming whoever
    runs the local cloud. Its private half stays in the local cloud's state; functions get the public half."""

    def __init__(self, private_pem: str, key_id: str) -> None:
        self.private_pem, self.key_id = private_pem, key_id

    @classmethod
    def generate(cls) -> "LocalIssuer":
        import secrets

        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        return cls(pem, secrets.token_hex(8))

    def public_keys(self) -> dict[str, str]:
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(self.private_pem.encode(), password=None)
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        return {self.key_id: public}

    def mint(self, email: str, audience: str, lifetime: int = LOCAL_TOKEN_SECONDS, **claims: Any) -> str:
        from google.auth import crypt, jwt

        now = int(time.time())
        payload = {"iss": LOCAL_ISSUER, "aud": audience, "sub": email, "email": email, "email_verified": True,
                   "iat": now, "exp": now + lifetime, **claims}
        return jwt.encode(crypt.RSASigner.from_string(self.private_pem, self.key_id), payload).decode()


def from_env(env: dict[str, str]) -> Verifier:
    """The verifier a deployment configures: ``TOLLGATE_IDENTITY=google`` (default) or ``local`` (the local
    cloud's public keys in ``TOLLGATE_LOCAL_ISSUER_KEYS``); ``TOLLGATE_ID_AUDIENCES`` (comma-separated) adds
    audiences to the URL each request was sent to."""
    audiences = tuple(a.strip() for a in env.get("TOLLGATE_ID_AUDIENCES", "").split(",") if a.strip())
    if env.get("TOLLGATE_IDENTITY", "google") == "local":
        return local_tokens(orjson.loads(env.get("TOLLGATE_LOCAL_ISSUER_KEYS") or "{}"), audiences)
    return google_id_tokens(audiences)
