"""One egress rule for every URL Tollgate calls because configuration named it (an MLflow tracking server, the
review webhook): only globally routable addresses, unless the deployment allow-lists a network.

A spec author can name a tracking server; a compromised DNS name can point anywhere. Without a rule the tracking
function would call ``http://169.254.169.254/`` — the metadata server, which answers with the function's own
credentials — or anything on the VPC. So:

- :func:`check_url` (when a spec loads, and before each use): http(s) only; no metadata host names; a literal
  address must be global (or allow-listed);
- :func:`admit` (before each use): the name is resolved and *every* address it resolves to must pass; then the
  host is guarded: every connection made to it (by ``requests``/``urllib3``, in any thread) is checked again on
  the address it actually connected to (:func:`_guarded_connection`), so a DNS answer that changes between the
  check and the connection (rebinding) still cannot reach a refused address.

``TOLLGATE_EGRESS_ALLOW``: comma-separated networks the deployment allows besides the global ones (the local
cloud allows ``127.0.0.1/32``, where its own MLflow and webhook receiver listen; an MLflow on the VPC would be
``10.8.0.0/24``). Link-local and metadata addresses are never allowed.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

ALLOW_ENV = "TOLLGATE_EGRESS_ALLOW"
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.google.internal.", "metadata", "metadata.goog"})
_NEVER = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"),
          ipaddress.ip_network("fd00:ec2::254/128"))   # link-local (the metadata server's home), whatever is allowed

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressRefused(ConnectionError):
    """A configured URL points where Tollgate does not connect; the message names the host, never the URL (which
    may carry credentials)."""


def allowed_networks(env: dict[str, str] | None = None) -> tuple[Network, ...]:
    """The deployment's allow-list (``TOLLGATE_EGRESS_ALLOW``)."""
    text = (os.environ if env is None else env).get(ALLOW_ENV, "")
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise EgressRefused(f"{ALLOW_ENV} holds {part!r}, which is not a network (e.g. 10.8.0.0/24)") from None
    return tuple(networks)


def address_allowed(address: Address | str, allow: tuple[Network, ...]) -> bool:
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in _NEVER):
        return False
    return ip.is_global or any(ip in net for net in allow if net.version == ip.version)


def never_allowed(url: str, what: str = "the URL") -> str:
    """The URL's host unless no deployment could ever call it: not http(s), the metadata server's name, or a
    link-local address (what a spec is refused for when it loads); else EgressRefused."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise EgressRefused(f"{what} is not an http(s) URL")
    if host in METADATA_HOSTS:
        raise EgressRefused(f"{what} names {host}, the metadata server's name; Tollgate never calls it")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return host
    if any(literal in net for net in _NEVER) or (isinstance(literal, ipaddress.IPv6Address) and literal.ipv4_mapped
                                                 and any(literal.ipv4_mapped in net for net in _NEVER)):
        raise EgressRefused(f"{what} names {host}, a link-local address (the metadata server's); Tollgate never "
                            "calls it")
    return host


def check_url(url: str, allow: tuple[Network, ...] | None = None, what: str = "the URL") -> str:
    """The URL's host, if the URL may be called at all (without resolving it); else EgressRefused."""
    host = never_allowed(url, what)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return host
    if not address_allowed(literal, allowed_networks() if allow is None else allow):
        raise EgressRefused(f"{what} names {host}, which is not a global address (loopback, private, link-local or "
                            f"reserved); allow its network in {ALLOW_ENV} if the deployment means it")
    return host


def admit(url: str, what: str = "the URL") -> str:
    """Check ``url``, resolve its host and check every address, then guard every connection to it; the host."""
    allow = allowed_networks()
    host = check_url(url, allow, what)
    port = urlsplit(url).port or (443 if url.startswith("https") else 80)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise EgressRefused(f"{what}: {host} does not resolve ({type(exc).__name__})") from None
    refused = sorted({info[4][0] for info in infos if not address_allowed(info[4][0].split("%")[0], allow)})
    if refused:
        raise EgressRefused(f"{what}: {host} resolves to {', '.join(refused)}, not a global address; allow its "
                            f"network in {ALLOW_ENV} if the deployment means it")
    _guard(host, allow)
    return host


# ---------------------------------------------------------------- connect time

_GUARDED: dict[str, tuple[Network, ...]] = {}
_LOCK = threading.Lock()
_ORIGINAL: Any = None


def _guard(host: str, allow: tuple[Network, ...]) -> None:
    global _ORIGINAL
    with _LOCK:
        _GUARDED[host.lower()] = allow
        if _ORIGINAL is None:
            from urllib3.util import connection

            _ORIGINAL = connection.create_connection
            connection.create_connection = _guarded_connection


def _guarded_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
    """urllib3's ``create_connection``, then, for a guarded host, the address it connected to checked."""
    sock = _ORIGINAL(address, *args, **kwargs)
    allow = _GUARDED.get(str(address[0]).lower())
    if allow is not None:
        peer = sock.getpeername()[0].split("%")[0]
        if not address_allowed(peer, allow):
            sock.close()
            raise EgressRefused(f"{address[0]} connected to {peer}, which is not a global address")
    return sock
