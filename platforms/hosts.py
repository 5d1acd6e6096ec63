"""Checks on hosts that users type (a Mastodon server, a custom PDS): the SSRF guard.

A user-supplied server is reached only over https, on the default port, with no userinfo, and
only when every address it resolves to is public. HAYON_ALLOW_PRIVATE_HOSTS lifts the address
and scheme rules for tests and local development (never set it in production).
"""
import ipaddress
import re
import socket
from urllib.parse import urlsplit

from django.conf import settings

from .errors import FlowError

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def _refuse(message: str):
    raise FlowError("invalid_server", message)


def resolve(host: str) -> list[str]:
    """Every address a name resolves to (tests replace this: nothing resolves here)."""
    try:
        infos = socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    return [info[4][0].split("%")[0] for info in infos]


def _check_addresses(host: str):
    addresses = [host] if _is_ip(host) else resolve(host)
    if not addresses:
        _refuse(f"The server {host} could not be found.")
    for raw in addresses:
        address = ipaddress.ip_address(raw)
        if not address.is_global:
            _refuse(f"The server {host} is on a private network; Hayon only connects to public servers.")


def public_base_url(raw: str) -> str:
    """Normalise 'example.social', 'https://example.social/', '@me@example.social' to 'https://example.social'."""
    value = (raw or "").strip()
    if value.startswith("@") or ("@" in value and "://" not in value):
        value = value.rsplit("@", 1)[1]  # a handle: @user@server
    if "://" not in value:
        value = "https://" + value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        _refuse("That does not look like a server address.")
    allow_private = settings.HAYON_ALLOW_PRIVATE_HOSTS
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.username is not None or parts.password is not None:
        _refuse("A server address cannot contain a user name or password.")
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        _refuse("The server must be reached over https.")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        _refuse("Give the server's address only, such as mastodon.social.")
    if not host or not (_HOSTNAME.match(host) or _is_ip(host)):
        _refuse("That does not look like a server address.")
    if port not in (None, 443) and not allow_private:
        _refuse("The server must use the standard https port.")
    if not allow_private:
        _check_addresses(host)
    netloc = host if port is None else f"{host}:{port}"
    if ":" in host:  # IPv6 literal
        netloc = f"[{host}]" if port is None else f"[{host}]:{port}"
    return f"{parts.scheme}://{netloc}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
