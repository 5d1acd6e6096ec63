"""Checks on hosts that users type (a Mastodon server, a custom PDS): the SSRF guard.

A user-supplied server is reached only over https, on the default port, with no userinfo, and
only when every address it resolves to is public. HAYON_ALLOW_PRIVATE_HOSTS lifts the address
and scheme rules for tests and local development (never set it in production).

The same address rule runs again when a connection is opened (platforms/http.py): the name is
resolved once more through `resolve`, every answer is checked, and the socket connects to an
address that was checked, so a name that answers "public" now and "127.0.0.1" a second later
(DNS rebinding) never reaches the private address.
"""
import ipaddress
import re
import socket
from urllib.parse import urlsplit

import idna
from django.conf import settings

from .errors import FlowError

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
# "127.1", "2130706433", "0x7f.1": browsers and getaddrinfo read these as IPv4 addresses.
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_DEFAULT_PORTS = {"https": 443, "http": 80}
# Prefixes that carry another address inside: NAT64 (RFC 6052, RFC 8215) can reach any IPv4
# address through a translator, IPv4-compatible ::a.b.c.d is deprecated (RFC 4291 §2.5.5.1).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# Configured platform endpoints (TUMBLR_API_URL, BLUESKY_PLC_URL, ...) are the operator's choice,
# not a user's: they may live on a private network (a self-hosted PDS, the test fakes).
_PLATFORM_URL_SETTING = re.compile(r"^(BLUESKY|FACEBOOK|INSTAGRAM|MASTODON|THREADS|TUMBLR)_\w*URL$")


def _refuse(message: str):
    raise FlowError("invalid_server", message)


def resolve(host: str) -> list[str]:
    """Every address a name resolves to (tests replace this: nothing resolves here)."""
    try:
        infos = socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    return [info[4][0].split("%")[0] for info in infos]


def addresses_for(host: str) -> list[str]:
    """The addresses of a host name or IP literal, through `resolve` (the one resolver tests control).

    `localhost` and `*.localhost` are loopback without asking DNS (RFC 6761 §6.3).
    """
    host = host.strip("[]").lower().rstrip(".")
    if _is_ip(host):
        return [host]
    if host == "localhost" or host.endswith(".localhost"):
        return ["127.0.0.1", "::1"]
    return list(dict.fromkeys(resolve(host)))  # keep the order, drop repeats


def refusal(raw: str) -> str | None:
    """Why Hayon must not connect to this address for a user-supplied server; None when it may."""
    address = ipaddress.ip_address(raw)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return refusal(str(address.ipv4_mapped))
        if any(address in network for network in _NAT64):
            return "a NAT64 address"
        if address in _IPV4_COMPATIBLE:
            return "an IPv4-compatible address"
        embedded = address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None and refusal(str(embedded)):
            return "a tunnel to a private address"
    if address.is_multicast or address.is_reserved or address.is_unspecified or not address.is_global:
        return "on a private network"
    return None


def is_configured(host: str, port: int) -> bool:
    """Whether host:port is a configured platform endpoint (TUMBLR_API_URL, ...: an operator's choice)."""
    host = host.strip("[]").lower().rstrip(".")
    for name in dir(settings):
        value = getattr(settings, name, None) if _PLATFORM_URL_SETTING.match(name) else None
        if not isinstance(value, str) or "://" not in value:
            continue
        try:
            parts = urlsplit(value)
            configured_port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            continue
        if (parts.hostname or "").rstrip(".") == host and configured_port == port:
            return True
    return False


def connectable_addresses(host: str, port: int) -> tuple[list[str], str | None]:
    """(addresses to connect to, None) or ([], why not): the check made when a socket is opened."""
    addresses = addresses_for(host)
    if settings.HAYON_ALLOW_PRIVATE_HOSTS:
        return addresses, None
    refused = next((reason for reason in map(refusal, addresses) if reason), None)
    if refused and not is_configured(host, port):
        return [], refused
    return addresses, None


def _check_addresses(host: str):
    addresses = addresses_for(host)
    if not addresses:
        _refuse(f"The server {host} could not be found.")
    if any(refusal(raw) for raw in addresses):
        _refuse(f"The server {host} is on a private network; Hayon only connects to public servers.")


def _ascii_host(host: str) -> str:
    """The host in lower case, without its trailing dot, with a Unicode name as IDNA (punycode)."""
    host = host.lower().rstrip(".")
    if _is_ip(host):
        return host
    try:
        host = idna.encode(host, uts46=True).decode("ascii")  # also refuses invalid xn-- labels
    except (idna.IDNAError, UnicodeError):
        _refuse("That does not look like a server address.")
    if not _HOSTNAME.match(host) or _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        _refuse("That does not look like a server address.")
    return host


def public_base_url(raw: str) -> str:
    """Normalise a server as users type it to one spelling per server.

    'Example.Social', 'https://example.social:443/', 'example.social.', '@me@example.social' all
    give 'https://example.social'; a Unicode name gives its IDNA form ('xn--...').
    """
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
    if parts.username is not None or parts.password is not None:
        _refuse("A server address cannot contain a user name or password.")
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        _refuse("The server must be reached over https.")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        _refuse("Give the server's address only, such as mastodon.social.")
    if not parts.hostname or not parts.hostname.rstrip("."):
        _refuse("That does not look like a server address.")
    host = _ascii_host(parts.hostname)
    if port == _DEFAULT_PORTS[parts.scheme]:
        port = None  # mastodon.social:443 is mastodon.social
    if port == 0 or (port is not None and not allow_private):
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
