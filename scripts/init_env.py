"""Write a .env with fresh secrets on first run (never overwrites, never committed)."""
import base64
import json
import os
import secrets
import sys
from pathlib import Path

path = Path(__file__).resolve().parent.parent / ".env"
if path.exists():
    sys.exit(0)
fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode()


def atproto_client_key() -> str:
    """One private ES256 JWK for Bluesky sign-in's private_key_jwt, as the JSON list the setting takes."""
    from cryptography.hazmat.primitives.asymmetric import ec

    numbers = ec.generate_private_key(ec.SECP256R1()).private_numbers()
    b64 = lambda n: base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()  # noqa: E731
    jwk = {"kty": "EC", "crv": "P-256", "kid": f"hayon-{secrets.token_hex(4)}", "x": b64(numbers.public_numbers.x),
           "y": b64(numbers.public_numbers.y), "d": b64(numbers.private_value)}
    return json.dumps([jwk], separators=(",", ":"))


path.write_text(
    "# Written by `make run` on first use. Keep it secret; see .env.example for every setting.\n"
    f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
    f"TOKEN_ENCRYPTION_KEYS={fernet_key}\n"
    f"ATPROTO_CLIENT_KEYS='{atproto_client_key()}'\n"
    "DEBUG=true\n"
    "PUBLIC_URL=http://127.0.0.1:8000\n"
)
path.chmod(0o600)
print(f"wrote {path} with a new SECRET_KEY, TOKEN_ENCRYPTION_KEYS and ATPROTO_CLIENT_KEYS")
