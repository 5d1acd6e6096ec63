"""Security cases 48 and 50: user-typed servers are normalised to one spelling, and the address the
SSRF guard checked is the address connected to (no DNS rebinding), with SNI and the certificate
still checked on the name. NAT64, IPv4-compatible and tunnel forms of private addresses are refused.
"""
import datetime
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from platforms import hosts, http
from platforms.errors import FlowError, Kind, PlatformError

from .fakes import hostile
from .test_http_limits import CLIENTS

PUBLIC = "93.184.216.34"




@pytest.fixture
def rebinding(monkeypatch):
    """`rebind.example` answers public to the first lookup and 127.0.0.1 to every later one, as a
    name server with a zero TTL does. The operating system's resolver gives 127.0.0.1 as well, so a
    connection that resolved on its own (instead of through the guard) would reach loopback."""
    answers = []
    real_getaddrinfo = socket.getaddrinfo

    def resolve(host):
        if host != "rebind.example":
            return []
        answers.append(PUBLIC if not answers else "127.0.0.1")
        return [answers[-1]]

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "rebind.example":
            return real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(hosts, "resolve", resolve)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


# -- DNS rebinding ----------------------------------------------------------------------------------
@pytest.mark.parametrize("get", CLIENTS)
def test_a_name_that_rebinds_to_loopback_after_the_check_is_refused(rebinding, get):
    assert hosts.public_base_url("rebind.example") == "https://rebind.example"  # checked: public
    with hostile.HostileServer(hostile.reply(b'{"secret": "internal"}')) as internal:
        with pytest.raises(PlatformError) as error:
            get(f"http://rebind.example:{internal.port}/admin")
    assert internal.connections == 0 and rebinding == [PUBLIC, "127.0.0.1"]
    assert error.value.kind is Kind.UNAVAILABLE
    assert error.value.message == "The server rebind.example is on a private network; Hayon only connects to public servers."


@pytest.mark.parametrize("get", CLIENTS)
def test_the_connection_goes_to_the_address_the_guard_resolved(monkeypatch, settings, get):
    """With private hosts allowed (tests, local development), names still resolve only through the guard."""
    settings.HAYON_ALLOW_PRIVATE_HOSTS = True
    monkeypatch.setattr(hosts, "resolve", lambda host: ["127.0.0.1"] if host == "pinned.example" else [])

    def no_second_lookup(host, *args, **kwargs):
        raise AssertionError(f"the connection resolved {host} again")

    monkeypatch.setattr(socket, "getaddrinfo", no_second_lookup)
    with hostile.HostileServer(hostile.reply(b'{"ok": true}')) as server:
        assert get(f"http://pinned.example:{server.port}/").json() == {"ok": True}
    assert f"host: pinned.example:{server.port}" in server.heads[0].decode().lower()


@pytest.mark.parametrize("get", CLIENTS)
def test_loopback_is_refused_at_connect_time_unless_private_hosts_are_allowed(settings, get):
    with hostile.HostileServer(hostile.reply(b"{}")) as server:
        with pytest.raises(PlatformError):
            get(f"http://localhost:{server.port}/")
        settings.HAYON_ALLOW_PRIVATE_HOSTS = True
        assert get(f"http://localhost:{server.port}/").status_code == 200
    assert server.connections == 1


@pytest.mark.parametrize("get", CLIENTS)
def test_a_configured_platform_endpoint_may_be_private(settings, get):
    """TUMBLR_API_URL and friends are the operator's choice (the test fakes, a self-hosted PDS)."""
    with hostile.HostileServer(hostile.reply(b"{}")) as server, hostile.HostileServer(hostile.reply(b"{}")) as other:
        settings.TUMBLR_API_URL = server.url
        assert get(f"{server.url}/v2/user/info").status_code == 200
        with pytest.raises(PlatformError):  # the same host on a port nobody configured
            get(other.url)
    assert other.connections == 0


# -- TLS on the name, socket on the pinned address ---------------------------------------------------
def _certificate(key, subject: str, issuer_key, issuer: str, *, ca: bool, names=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def tls_server(tmp_path, monkeypatch, settings):
    """A TLS server on 127.0.0.1 with a certificate for `pinned.example` from a test CA that Hayon's
    verifying context trusts; both `pinned.example` and `other.example` resolve to it."""
    settings.HAYON_ALLOW_PRIVATE_HOSTS = True
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(ca_key, "Hayon test CA", ca_key, "Hayon test CA", ca=True)
    cert = _certificate(key, "pinned.example", ca_key, "Hayon test CA", ca=False, names=["pinned.example"])
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client_context = http.verifying_context(str(tmp_path / "ca.pem"))
    monkeypatch.setattr(http, "_tls_context", lambda: client_context)
    monkeypatch.setattr(hosts, "resolve", lambda host: ["127.0.0.1"] if host in ("pinned.example", "other.example") else [])
    with hostile.HostileServer(hostile.reply(b'{"tls": true}'), tls=context) as server:
        context.sni_callback = lambda sock, name, ctx: server.server_names.append(name)
        yield server


@pytest.mark.parametrize("get", CLIENTS)
def test_tls_keeps_sni_and_the_certificate_check_on_the_name(tls_server, get):
    assert get(f"https://pinned.example:{tls_server.port}/").json() == {"tls": True}
    assert tls_server.server_names == ["pinned.example"]  # SNI names the host, not 127.0.0.1
    with pytest.raises(PlatformError) as error:  # same address, a name the certificate does not carry
        get(f"https://other.example:{tls_server.port}/")
    assert error.value.kind is Kind.UNAVAILABLE and "other.example" in error.value.message


# -- the address rules ------------------------------------------------------------------------------
@pytest.mark.parametrize("address", [
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::5db8:d822",  # NAT64 of a public address: still a translator Hayon cannot see past
    "64:ff9b:1::a00:1",  # local-use NAT64 (RFC 8215)
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:127.0.0.1", "::ffff:169.254.169.254",  # IPv4-mapped
    "2002:7f00:1::1", "2002:a00:1::1",  # 6to4 around 127.0.0.1 and 10.0.0.1
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo
    "127.0.0.1", "10.1.2.3", "100.64.0.1", "169.254.169.254", "224.0.0.1", "0.0.0.0", "::1", "fe80::1", "fc00::1",
])
def test_private_forms_are_refused(address, monkeypatch, fake_dns):
    assert hosts.refusal(address)
    monkeypatch.setitem(fake_dns, "tricky.example", [address])
    with pytest.raises(FlowError):
        hosts.public_base_url("tricky.example")
    with pytest.raises(FlowError):
        hosts.public_base_url(f"[{address}]" if ":" in address else address)


@pytest.mark.parametrize("address, reason", [
    ("64:ff9b::7f00:1", "a NAT64 address"), ("64:ff9b:1::a00:1", "a NAT64 address"),
    ("::127.0.0.1", "an IPv4-compatible address"), ("::ffff:10.0.0.1", "on a private network"),
    ("2002:7f00:1::1", "a tunnel to a private address"),
])
def test_the_log_says_which_form_was_refused(address, reason):
    """Each form has its own rule, not only Python's is_global (whose tables change between versions)."""
    assert hosts.refusal(address) == reason


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1::1", "2002:5db8:d822::1"])
def test_public_addresses_pass(address):
    assert hosts.refusal(address) is None


# -- one spelling per server ------------------------------------------------------------------------
@pytest.mark.parametrize("typed", [
    "social.example", "Social.Example", "SOCIAL.EXAMPLE.", "https://social.example:443", "social.example:443/",
    "HTTPS://social.example/", "@someone@social.example", "ｓｏｃｉａｌ.example", " social.example ",
])
def test_spellings_of_one_server_normalise_to_one(typed):
    assert hosts.public_base_url(typed) == "https://social.example"


def test_unicode_names_become_punycode(monkeypatch, fake_dns):
    monkeypatch.setitem(fake_dns, "xn--bcher-kva.example", [PUBLIC])
    assert hosts.public_base_url("Bücher.example") == hosts.public_base_url("xn--bcher-kva.example") == "https://xn--bcher-kva.example"


@pytest.mark.parametrize("typed", ["xn--zz.example", "a_b.example", "bad..example", "127.1", "0x7f.1", "2130706433", "example.0x1"])
def test_invalid_names_are_refused(typed, settings):
    """Refused as names even where private hosts are allowed: "127.1" is 127.0.0.1 to getaddrinfo,
    and would otherwise be a second key for one server."""
    settings.HAYON_ALLOW_PRIVATE_HOSTS = True
    with pytest.raises(FlowError) as error:
        hosts.public_base_url(typed)
    assert error.value.code == "invalid_server"


def test_local_servers_keep_their_port_and_drop_the_default_one(settings):
    settings.HAYON_ALLOW_PRIVATE_HOSTS = True
    assert hosts.public_base_url("http://LocalHost:80/") == "http://localhost"
    assert hosts.public_base_url("http://localhost:8765") == "http://localhost:8765"
    assert hosts.public_base_url("https://127.0.0.1:443") == "https://127.0.0.1"
    assert hosts.public_base_url("http://[::1]:8765") == "http://[::1]:8765"
    # Different names stay different servers; accounts are keyed on the account's own URI.
    assert hosts.public_base_url("localhost:8765") != hosts.public_base_url("127.0.0.1:8765")
