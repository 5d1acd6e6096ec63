"""Bluesky facets (publishing/facets.py): byte ranges checked by slicing the UTF-8 bytes."""
import pytest
from atproto_client.utils import detect_facets, detect_mentions

from publishing.facets import bluesky_facets, mention_handles

DIDS = {"alice.test": "did:plc:alice", "bob.bsky.social": "did:plc:bob"}


def resolve(handle):
    return DIDS.get(handle)


def marked(text, facets):
    """What each facet selects, by slicing the UTF-8 bytes the way Bluesky's clients do."""
    data = text.encode("utf-8")
    return [data[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode("utf-8") for f in facets]


def features(facets):
    return [f["features"][0] for f in facets]


def test_cjk_and_emoji_before_a_link_a_mention_and_a_tag_shift_the_byte_offsets():
    text = "日本語のテキスト 👨\u200d👩\u200d👧🇫🇷 https://example.com/パス @alice.test #タグ"
    facets = bluesky_facets(text, resolve=resolve)
    assert marked(text, facets) == ["https://example.com/パス", "@alice.test", "#タグ"]
    assert features(facets) == [
        {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/パス"},
        {"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:alice"},
        {"$type": "app.bsky.richtext.facet#tag", "tag": "タグ"},
    ]
    assert facets[0]["index"]["byteStart"] > text.index("https")  # bytes, not characters


def test_facets_are_shaped_exactly_like_the_lexicon():
    [facet] = bluesky_facets("go to https://bsky.app", resolve=resolve)
    assert facet == {
        "$type": "app.bsky.richtext.facet",
        "index": {"byteStart": 6, "byteEnd": 22},
        "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://bsky.app"}],
    }


def test_a_mention_range_includes_the_at_sign_and_stops_before_punctuation():
    text = "thanks @bob.bsky.social: and @alice.test."
    facets = bluesky_facets(text, resolve=resolve)
    assert marked(text, facets) == ["@bob.bsky.social", "@alice.test"]
    assert [f["did"] for f in features(facets)] == ["did:plc:bob", "did:plc:alice"]


def test_an_unresolvable_handle_stays_plain_text_and_each_handle_is_resolved_once():
    asked = []

    def counting_resolver(handle):
        asked.append(handle)
        return resolve(handle)

    text = "@ghost.bsky.social @Alice.test @alice.test @notahandle mail@alice.test"
    facets = bluesky_facets(text, resolve=counting_resolver)
    assert marked(text, facets) == ["@Alice.test", "@alice.test"]
    assert asked == ["ghost.bsky.social", "alice.test"]
    assert mention_handles(text) == ["ghost.bsky.social", "alice.test"]


def test_a_resolver_failure_is_not_swallowed():
    def broken(handle):
        raise ConnectionError("PDS unreachable")

    with pytest.raises(ConnectionError):
        bluesky_facets("hi @alice.test", resolve=broken)


@pytest.mark.parametrize("text, selected, uri", [
    ("see example.com.", "example.com", "https://example.com"),              # bare domain, dot dropped
    ("(https://example.com)", "https://example.com", "https://example.com"),  # unmatched ) dropped
    ("read https://en.wikipedia.org/wiki/Foo_(bar)", "https://en.wikipedia.org/wiki/Foo_(bar)",
     "https://en.wikipedia.org/wiki/Foo_(bar)"),
    ("https://example.com/a?b=c!", "https://example.com/a?b=c", "https://example.com/a?b=c"),
    ("docs.bsky.app/docs/advanced-guides/post-richtext", "docs.bsky.app/docs/advanced-guides/post-richtext",
     "https://docs.bsky.app/docs/advanced-guides/post-richtext"),
    ("https://example.com/" + "x" * 300, "https://example.com/" + "x" * 300,
     "https://example.com/" + "x" * 300),                                     # long links are whole
])
def test_links_are_marked_like_the_bluesky_app_marks_them(text, selected, uri):
    facets = bluesky_facets(text, resolve=resolve)
    assert marked(text, facets) == [selected]
    assert features(facets) == [{"$type": "app.bsky.richtext.facet#link", "uri": uri}]


@pytest.mark.parametrize("text", [
    "見てhttps://example.com",      # glued to the previous word: the app does not link it
    "not.a.domain.zzzqqq",          # unknown TLD
    "file.txt and v1.2",
    "https://.",
])
def test_text_that_only_looks_like_a_link_is_left_alone(text):
    assert bluesky_facets(text, resolve=resolve) == []


@pytest.mark.parametrize("text, tags, selected", [
    ("#hello! #hello-world, #c++ #tag's", ["hello", "hello-world", "c++", "tag's"],
     ["#hello", "#hello-world", "#c++", "#tag's"]),
    ("#123 #1.5 #2024", [], []),                                  # pure numbers are not tags
    ("#a1 #1a", ["a1", "1a"], ["#a1", "#1a"]),
    ("＃全角 #日本語。", ["全角", "日本語"], ["＃全角", "#日本語"]),     # full-width # and CJK punctuation
    ("#\ufe0f\u20e3 keycap", [], []),                             # the #️⃣ emoji is not a tag
    ("a#b c #d", ["d"], ["#d"]),                                  # a tag starts after a space
    ("#" + "👍🏽" * 64, ["👍🏽" * 64], ["#" + "👍🏽" * 64]),           # 64 graphemes (128 code points)
    ("#" + "👍🏽" * 65, [], []),
    ("#" + "a" * 65, [], []),
    ("price $aapl.", ["$AAPL"], ["$aapl"]),                       # cashtags, as the reference marks them
])
def test_tags_follow_bluesky_rules(text, tags, selected):
    facets = bluesky_facets(text, resolve=resolve)
    assert [f["tag"] for f in features(facets)] == tags
    assert marked(text, facets) == selected


def test_tag_range_includes_the_hash_and_value_does_not():
    text = "日本 #タグ!"
    [facet] = bluesky_facets(text, resolve=resolve)
    assert marked(text, [facet]) == ["#タグ"]
    assert facet["features"][0]["tag"] == "タグ"


def test_facets_never_overlap():
    text = "https://example.com/(@alice.test) and #x"
    facets = bluesky_facets(text, resolve=resolve)
    assert marked(text, facets) == ["https://example.com/(@alice.test)", "#x"]
    ends = [(f["index"]["byteStart"], f["index"]["byteEnd"]) for f in facets]
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(ends, ends[1:]))


CORPUS = [
    "日本語 https://example.com/パス 🎉 @alice.test #タグ",
    "visit example.com. or (https://en.wikipedia.org/wiki/Foo_(bar)) and (see bsky.app)",
    "#hello! #123 #a1 #c++ #tag's ＃全角 #️⃣ #hello-world, #_x",
    "@bob.bsky.social: hi @alice.test. @notahandle @carol.example.com",
    "price $AAPL, $tsla! $toolong $5",
    "👨\u200d👩\u200d👧 #👍🏽 https://x.org/a?b=c!\nnew line #tag\ttab @alice.test",
    "https://example.com/@bob.test (@alice.test) 見てhttps://example.com",
]


@pytest.mark.parametrize("text", CORPUS)
def test_same_facets_as_the_atproto_sdks_port_of_the_reference(text):
    """The `atproto` SDK we already pin ports detectFacets too; both must agree byte for byte."""
    theirs = [(f.index.byte_start, f.index.byte_end, getattr(f.features[0], "uri", None)
               or getattr(f.features[0], "tag", None)) for f in detect_facets(text)]
    theirs += [(m.byte_start, m.byte_end, m.handle.lower()) for m in detect_mentions(text)]
    ours = [(f["index"]["byteStart"], f["index"]["byteEnd"],
             f["features"][0].get("uri") or f["features"][0].get("tag") or f["features"][0]["did"])
            for f in bluesky_facets(text, resolve=lambda handle: handle)]
    assert ours == sorted(theirs)
