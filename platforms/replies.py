"""The one validating parser for platform JSON, and small typed accessors over what it returns.

A reply is hostile input (security case 45): nesting is bounded before `json` sees it (the C
parser recurses and a deep document raises RecursionError), NaN/Infinity and absurd numbers are
refused (an `exp` of 1e400 becomes inf, 1e20 overflows datetime), and a value of the wrong type
is BAD_REPLY, never an AttributeError deep inside a provider.

    data = replies.json_object(response.content, label="Tumblr")
    user = replies.obj(replies.obj(data, "response", label="Tumblr"), "user", label="Tumblr")
    name = replies.text(user, "name", label="Tumblr", required=True)
"""
import json
import math
import re

from .errors import Kind, PlatformError

MAX_DEPTH = 64  # platform replies nest a handful of levels; 64 leaves room and stays far from the stack
MAX_INT_DIGITS = 30  # ids are at most 20 digits; a longer number is an attack on whatever uses it
# A JSON string (with its escapes) or a bracket: brackets inside strings are not nesting.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def _unreadable(label: str, status: int | None = None) -> PlatformError:
    return PlatformError(Kind.BAD_REPLY, f"{label} sent a reply Hayon could not read.", status=status)


def nesting_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """How deep `text` nests, counted up to limit + 1 (enough to refuse it)."""
    if text.count("[") + text.count("{") <= limit:
        return 0  # cannot nest deeper than it has brackets
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        char = text[match.start()]
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        elif char in "]}":
            depth -= 1
    return deepest


def _finite(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _bounded_int(raw: str) -> int:
    if len(raw.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError("integer too long")
    return int(raw)


def _no_constants(raw: str):
    raise ValueError(f"{raw} is not JSON")


def parse(body: bytes | str, *, label: str, status: int | None = None):
    """Any JSON value from a platform, or BAD_REPLY; never RecursionError, OverflowError, inf or NaN."""
    if isinstance(body, (bytes, bytearray)):
        try:
            text = bytes(body).decode(json.detect_encoding(body))  # UTF-8/16/32 as json.loads would
        except (UnicodeDecodeError, LookupError):
            raise _unreadable(label, status) from None
    else:
        text = body
    if nesting_depth(text) > MAX_DEPTH:
        raise _unreadable(label, status)
    try:
        return json.loads(text, parse_float=_finite, parse_int=_bounded_int, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise _unreadable(label, status) from None


def json_object(body: bytes | str, *, label: str, status: int | None = None) -> dict:
    """A JSON object (a list, a string, an HTML page are BAD_REPLY)."""
    data = parse(body, label=label, status=status)
    if not isinstance(data, dict):
        raise _unreadable(label, status)
    return data


# -- typed accessors (providers may adopt them one at a time) ---------------------------------------
_MISSING = object()


def _get(data, key: str, label: str, required: bool):
    if not isinstance(data, dict):
        raise _unreadable(label)
    value = data.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise PlatformError(Kind.BAD_REPLY, f"{label} sent a reply without {key!r}.")
        return _MISSING
    return value


def _wrong(label: str, key: str, what: str) -> PlatformError:
    return PlatformError(Kind.BAD_REPLY, f"{label} sent {key!r} that is not {what}.")


def obj(data, key: str, *, label: str, required: bool = False) -> dict:
    """data[key] as a dict ({} when absent and not required)."""
    value = _get(data, key, label, required)
    if value is _MISSING:
        return {}
    if not isinstance(value, dict):
        raise _wrong(label, key, "an object")
    return value


def array(data, key: str, *, label: str, required: bool = False) -> list:
    """data[key] as a list ([] when absent and not required)."""
    value = _get(data, key, label, required)
    if value is _MISSING:
        return []
    if not isinstance(value, list):
        raise _wrong(label, key, "a list")
    return value


def text(data, key: str, *, label: str, required: bool = False, max_length: int = 10_000) -> str:
    """data[key] as a string ('' when absent and not required); numbers are not strings."""
    value = _get(data, key, label, required)
    if value is _MISSING:
        return ""
    if not isinstance(value, str) or len(value) > max_length:
        raise _wrong(label, key, "text")
    if required and not value:
        raise PlatformError(Kind.BAD_REPLY, f"{label} sent an empty {key!r}.")
    return value


def integer(data, key: str, *, label: str, required: bool = False,
            minimum: int | None = None, maximum: int | None = None) -> int | None:
    """data[key] as an int within [minimum, maximum] (None when absent and not required).

    For a Unix time, `maximum=253402300799` (the end of year 9999) keeps datetime from overflowing.
    """
    value = _get(data, key, label, required)
    if value is _MISSING:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(label, key, "a whole number")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _wrong(label, key, "in range")
    return value


def flag(data, key: str, *, label: str, default: bool = False) -> bool:
    """data[key] as a bool (`default` when absent)."""
    value = _get(data, key, label, False)
    if value is _MISSING:
        return default
    if not isinstance(value, bool):
        raise _wrong(label, key, "true or false")
    return value
