"""Counting rules for the composer and the server's validation (publishing/text.py)."""
import pytest

from publishing.text import (
    code_points, count_hashtags, count_mentions, count_text, fitting_prefix, graphemes,
    mastodon_length, threads_length, utf8_bytes,
)

FAMILY = "👨\u200d👩\u200d👧"          # 5 code points, 18 UTF-8 bytes
THUMB_TONE = "👍🏽"                    # 2 code points, 8 bytes
FLAG = "🇫🇷"                          # 2 regional indicators, 8 bytes
E_ACUTE = "e\u0301"                   # e + combining acute accent
PHOENIX = "🐦\u200d🔥"                 # Unicode 15.1 ZWJ sequence
SCOTLAND = "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"  # tag sequence
KEYCAP = "#\ufe0f\u20e3"


@pytest.mark.parametrize("text, expected", [
    (THUMB_TONE, 1), (FLAG, 1), (FAMILY, 1), (E_ACUTE, 1), (PHOENIX, 1), (SCOTLAND, 1),
    (KEYCAP, 1), ("日本語", 3), ("한국어", 3), ("", 0), (FLAG * 2, 2),
])
def test_graphemes_count_what_a_person_sees(text, expected):
    assert graphemes(text) == expected


def test_a_bluesky_post_of_300_graphemes_is_longer_in_code_points():
    text = "a" * 299 + FAMILY
    assert graphemes(text) == 300
    assert code_points(text) == 304
    assert utf8_bytes(text) == 299 + 18


@pytest.mark.parametrize("text, expected", [
    ("hello", 5),
    ("👍", 4), (THUMB_TONE, 8), (FLAG, 8), (FAMILY, 18), (KEYCAP, 7),
    ("日本語", 3),          # CJK is not emoji: one each
    (E_ACUTE, 2),          # code points, never fewer than graphemes
    ("a👍b", 6),
])
def test_threads_counts_emoji_by_their_utf8_bytes(text, expected):
    assert threads_length(text) == expected


LONG_URL = "https://example.com/" + "a" * 100


@pytest.mark.parametrize("text, expected", [
    (LONG_URL, 23),
    ("https://t.co", 23),                               # short URLs count 23 too
    ("see " + LONG_URL + ".", 4 + 23 + 1),               # the final dot is not part of the URL
    ("gemini://example.org/page", 23),
    ("http://localhost:3000/xyz", 25),                   # no known TLD: its real length
    ("example.com/" + "a" * 40, 52),                     # no scheme: real length
    ("見てhttps://example.com/path", 2 + 23),            # glued to CJK text it is still a URL
    ("(https://en.wikipedia.org/wiki/Foo_(bar))", 1 + 23 + 1),
    ("@alice@mastodon.example", 6),                      # counts only @alice
    ("hi @alice", 9),
    ("bob@example.com", 15),                             # an email address is not a mention
    ("https://mastodon.social/@alice@other.social", 23),  # a mention inside a URL is the URL
    ("https://example.invalid/" + "a" * 30, 54),         # .invalid is no TLD: not a URL
    (FAMILY + " " + THUMB_TONE, 3),
    ("   \n ", 0),                                       # blank text counts nothing (Ruby blank?)
])
def test_mastodon_counts_by_the_server_rule(text, expected):
    assert mastodon_length(text) == expected


def test_mastodon_uses_the_servers_reserved_url_length_and_counts_the_content_warning():
    assert mastodon_length(LONG_URL, characters_reserved_per_url=25) == 25
    assert mastodon_length("body", spoiler_text="CW " + FLAG) == 4 + 4


def test_mastodon_limit_is_reached_exactly_at_the_server_number():
    text = "x" * 476 + " " + LONG_URL
    assert mastodon_length(text) == 500
    assert count_text(text + "!", counting="mastodon") == 501


def test_mastodon_counting_stays_fast_on_hostile_text():
    import time
    started = time.monotonic()
    mastodon_length("https://" + "a." * 2500 + " " + "a." * 5000 + ":")
    assert time.monotonic() - started < 5  # was minutes with twitter-text's label grammar


def test_count_text_selects_the_declared_rule_and_refuses_unknown_ones():
    assert count_text(THUMB_TONE, counting="graphemes") == 1
    assert count_text(THUMB_TONE, counting="code_points") == 2
    assert count_text(THUMB_TONE, counting="threads") == 8
    assert count_text(THUMB_TONE, counting="utf8_bytes") == 8
    assert count_text(LONG_URL, counting="mastodon", characters_reserved_per_url=30) == 30
    with pytest.raises(ValueError, match="unknown counting rule 'graphems'"):
        count_text("x", counting="graphems")


def test_instagram_hashtags_and_mentions_are_counted_per_occurrence():
    text = "#sun #sea c#not ＃全角 #sun! mail me@example.com @alice @bob.smith"
    assert count_hashtags(text) == 4
    assert count_mentions(text) == 2
    assert count_hashtags(" ".join(f"#t{i}" for i in range(31))) == 31


def test_fitting_prefix_marks_where_the_text_overflows():
    text = "a" * 298 + THUMB_TONE * 5
    cut = fitting_prefix(text, limit=300, counting="graphemes")
    assert text[:cut] == "a" * 298 + THUMB_TONE * 2      # never splits a skin-toned emoji
    assert fitting_prefix("short", limit=300, counting="graphemes") == 5
    over = "x" * 480 + " " + LONG_URL + " tail"
    cut = fitting_prefix(over, limit=500, counting="mastodon")
    assert mastodon_length(over[:cut]) <= 500 < mastodon_length(over[:cut + 1])
