"""ES256 keys and the two JWTs Hayon signs: DPoP proofs (RFC 9449) and client assertions (RFC 7523).

Private keys travel as JWKs (dicts): a DPoP key lives encrypted with the tokens it binds, a client
key comes from ATPROTO_CLIENT_KEYS. Only the public half ever leaves Hayon.
"""
import base64
import hashlib
import json
import secrets
import time
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

PUBLIC_FIELDS = ("kty", "crv", "x", "y")
ASSERTION_LIFETIME = 60  # seconds: an assertion is used at once, and is single-use at the server


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_private_jwk(*, kid: str | None = None) -> dict:
    """A fresh P-256 key as a private JWK."""
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.private_numbers()
    jwk = {
        "kty": "EC", "crv": "P-256",
        "x": b64url(numbers.public_numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.public_numbers.y.to_bytes(32, "big")),
        "d": b64url(numbers.private_value.to_bytes(32, "big")),
    }
    if kid:
        jwk["kid"] = kid
    return jwk


def public_jwk(jwk: dict) -> dict:
    """The public half, with kid/use/alg where the private one names them."""
    public = {name: jwk[name] for name in PUBLIC_FIELDS}
    public.update({name: jwk[name] for name in ("kid",) if name in jwk})
    public.update(use="sig", alg="ES256")
    return public


def _private_key(jwk: dict) -> ec.EllipticCurvePrivateKey:
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or not jwk.get("d"):
        raise ValueError("not a private P-256 JWK")
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(_unb64url(jwk["x"]), "big"), int.from_bytes(_unb64url(jwk["y"]), "big"), ec.SECP256R1())
    return ec.EllipticCurvePrivateNumbers(int.from_bytes(_unb64url(jwk["d"]), "big"), public).private_key()


def check_private_jwk(jwk) -> dict:
    """A usable private P-256 JWK, or ValueError (settings and stored keys are checked with this)."""
    if not isinstance(jwk, dict):
        raise ValueError("a key must be a JSON object (a JWK)")
    _private_key(jwk)
    return jwk


def sign(header: dict, payload: dict, jwk: dict) -> str:
    """A compact ES256 JWS: the signature is r||s, 32 bytes each (RFC 7518 §3.4), not DER."""
    signing_input = f"{b64url(json.dumps({**header, 'alg': 'ES256'}, separators=(',', ':')).encode())}." \
                    f"{b64url(json.dumps(payload, separators=(',', ':')).encode())}"
    der = _private_key(jwk).sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def htu(url: str) -> str:
    """The DPoP `htu`: the request URL without query and fragment (RFC 9449 §4.2)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def dpop_proof(jwk: dict, *, method: str, url: str, nonce: str | None = None, access_token: str | None = None) -> str:
    payload = {"jti": secrets.token_urlsafe(16), "htm": method.upper(), "htu": htu(url), "iat": int(time.time())}
    if nonce:
        payload["nonce"] = nonce
    if access_token:  # a resource request: bind the proof to the token (`ath`, RFC 9449 §4.2)
        payload["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
    header = {"typ": "dpop+jwt", "jwk": {name: jwk[name] for name in PUBLIC_FIELDS}}
    return sign(header, payload, jwk)


def client_assertion(jwk: dict, *, client_id: str, audience: str) -> str:
    """private_key_jwt (RFC 7523 §2.2): `aud` is the authorization server's issuer (atproto spec)."""
    now = int(time.time())
    payload = {"iss": client_id, "sub": client_id, "aud": audience, "jti": secrets.token_urlsafe(16),
               "iat": now, "exp": now + ASSERTION_LIFETIME}
    return sign({"kid": jwk.get("kid", "")}, payload, jwk)
