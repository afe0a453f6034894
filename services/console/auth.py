"""Who is asking: on Google Cloud, the identity Identity-Aware Proxy signed into ``X-Goog-IAP-JWT-Assertion``,
verified (signature with IAP's public keys, audience, issuer, expiry) by ``tollgate.identity`` and never taken on
trust; on the local cloud, the person running it. Any other configuration refuses every request (fail closed)."""

from __future__ import annotations

from typing import Callable

from tollgate import identity
from tollgate.identity import IAP_ISSUERS, Unauthenticated, Verifier

IAP_HEADER = "X-Goog-IAP-JWT-Assertion"
IAP_ISSUER = IAP_ISSUERS[0]

__all__ = ["IAP_HEADER", "IAP_ISSUER", "IapVerifier", "Unauthenticated", "Verifier"]


def IapVerifier(audience: str, keys: Callable[[], dict[str, str]] | None = None) -> Verifier:  # noqa: N802
    """IAP's signed header for ``audience`` (``/projects/NUMBER/global/backendServices/ID``: the console's backend
    service behind its load balancer); IAP's public keys are fetched once an hour."""
    verifier = identity.iap(audience, keys)
    verifier.what = f"{IAP_HEADER} header"
    return verifier
