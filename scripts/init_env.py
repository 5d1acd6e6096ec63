"""Write a .env with fresh secrets on first run (never overwrites, never committed)."""
import base64
import os
import secrets
import sys
from pathlib import Path

path = Path(__file__).resolve().parent.parent / ".env"
if path.exists():
    sys.exit(0)
fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
path.write_text(
    "# Written by `make run` on first use. Keep it secret; see .env.example for every setting.\n"
    f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
    f"TOKEN_ENCRYPTION_KEYS={fernet_key}\n"
    "DEBUG=true\n"
    "PUBLIC_URL=http://127.0.0.1:8000\n"
)
path.chmod(0o600)
print(f"wrote {path} with a new SECRET_KEY and TOKEN_ENCRYPTION_KEYS")
