"""What a Mastodon-API server says about itself, read as pure functions over its replies.

Posting limits from `/api/v2/instance` (or v1 on servers older than 4.0), the server's software,
and the canonical form of the URLs it hands back. Docs: https://docs.joinmastodon.org/methods/instance/ ,
https://docs.joinmastodon.org/entities/Instance/ . Every field is checked for its type: a server may
send anything (issue 13, item 7: a `configuration` that is a list).
"""
import re
from urllib.parse import urlsplit

# When a server does not say, the composer assumes the smaller of the values Mastodon has shipped
# (docs' Instance example: 10 MB images, 40 MB videos): too small only costs a re-encode.
DEFAULT_LIMITS = {
    "maxCharacters": 500,
    "maxMediaAttachments": 4,
    "charactersReservedPerUrl": 23,
    "imageSizeLimit": 10 * 1024 * 1024,
    "imageMatrixLimit": 16_777_216,  # 4096 x 4096
    "videoSizeLimit": 40 * 1024 * 1024,
    "videoMatrixLimit": 2_304_000,  # 1920 x 1200
    "supportedMimeTypes": ["image/jpeg", "image/png", "image/gif", "image/webp", "video/mp4"],
}
# (our key, section of `configuration`, the server's field, the most we believe)
_NUMBERS = (
    ("maxCharacters", "statuses", "max_characters", 1_000_000),
    ("maxMediaAttachments", "statuses", "max_media_attachments", 100),
    ("charactersReservedPerUrl", "statuses", "characters_reserved_per_url", 10_000),
    ("imageSizeLimit", "media_attachments", "image_size_limit", 2**40),
    ("imageMatrixLimit", "media_attachments", "image_matrix_limit", 2**40),
    ("videoSizeLimit", "media_attachments", "video_size_limit", 2**40),
    ("videoMatrixLimit", "media_attachments", "video_matrix_limit", 2**40),
)
_MIME = re.compile(r"^[a-z]+/[a-z0-9][a-z0-9.+-]{0,80}$")
_SOFTWARE_NAMES = {  # the repository name in `source_url` -> how the project writes its name
    "mastodon": "Mastodon", "takahe": "Takahē", "gotosocial": "GoToSocial", "pleroma": "Pleroma",
    "akkoma": "Akkoma", "glitch-soc": "glitch-soc", "hometown": "Hometown", "iceshrimp": "Iceshrimp",
    "sharkey": "Sharkey", "misskey": "Misskey", "friendica": "Friendica", "snac": "snac",
}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,29}$")
_VERSION = re.compile(r"\d+(?:\.\d+){0,3}")
_COMPATIBLE = re.compile(r"\(compatible; ([A-Za-z][A-Za-z0-9._-]{0,29}) (\d+(?:\.\d+){0,3})")


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _count(value, most: int) -> int | None:
    # bool is an int in Python; `true` is not a limit.
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most else None


def extract_limits(data) -> dict | None:
    """Posting limits from an instance reply; None when it has no usable `configuration`."""
    configuration = _dict(data).get("configuration")
    if not isinstance(configuration, dict):
        return None
    limits = {key: value for key, value in DEFAULT_LIMITS.items() if key != "supportedMimeTypes"}
    for key, section, field, most in _NUMBERS:
        value = _count(_dict(configuration.get(section)).get(field), most)
        # Zero is a real answer only for videos (Takahē: no video at all); elsewhere it means "not set".
        if value is not None and (value > 0 or key == "videoSizeLimit"):
            limits[key] = value
    types = _dict(configuration.get("media_attachments")).get("supported_mime_types")
    if isinstance(types, list) and types:
        limits["supportedMimeTypes"] = [t for t in types if isinstance(t, str) and _MIME.match(t)][:100]
    else:
        limits["supportedMimeTypes"] = list(DEFAULT_LIMITS["supportedMimeTypes"])
    if limits["videoSizeLimit"] == 0:
        limits["supportedMimeTypes"] = [t for t in limits["supportedMimeTypes"] if not t.startswith("video/")]
    return limits


def extract_software(data) -> dict | None:
    """{"name", "version"} from `version` and `source_url`, when the server says; else None.

    Mastodon: "4.4.0" and github.com/mastodon/mastodon; Takahē: "takahe/0.11.0"; GoToSocial:
    "0.19.0 git-…"; Pleroma-likes: "2.7.2 (compatible; Pleroma 2.5.0)".
    """
    data = _dict(data)
    version = data.get("version") if isinstance(data.get("version"), str) else ""
    source = data.get("source_url") if isinstance(data.get("source_url"), str) else ""
    name = ""
    compatible = _COMPATIBLE.search(version)
    if compatible:
        name, version = compatible.groups()
    elif "/" in version:
        name, _, version = version.partition("/")
    if not name and source:
        name = urlsplit(source).path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    name = _SOFTWARE_NAMES.get(name.lower(), name if _NAME.match(name) else "")
    number = _VERSION.match(version.strip())
    if not name:
        return None
    return {"name": name, "version": number.group(0) if number else ""}


def canonical_url(value) -> str:
    """An http(s) URL with its scheme and host in canonical form (lower case, IDNA, no trailing dot,
    no default port), path kept; "" for anything else. Used for the URLs a server reports."""
    if not isinstance(value, str) or len(value) > 2000:
        return ""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
        host = (parts.hostname or "").rstrip(".")
        host = host.encode("idna").decode("ascii").lower() if host and not host.isascii() else host.lower()
    except (ValueError, UnicodeError):
        return ""
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host or parts.username is not None:
        return ""
    if port == {"http": 80, "https": 443}[scheme]:
        port = None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}{parts.path or ''}"


def origin(url: str) -> str:
    """scheme://host[:port] of a canonical URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
