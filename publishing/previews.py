"""What the composer's preview shows for one account, worked out before a template or script prints it.

A preview is the post as that platform's feed will show it: its text in segments (plain, link,
mention, tag, marked by the platform's own detection), the part past the platform's limit marked
as overflow, the cut where the feed says "see more", and the images in the feed's crop. Which
detection and crop a platform uses is its Publisher's `publish_preview` declaration
(publishing/interface.py `Preview`); nothing here knows a platform by name. The page renders
this server-side first; POST /api/posts/validate answers the same data as JSON for the live preview.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from . import facets
from . import text as counting
from .interface import Preview, Rules

LINK, MENTION, TAG, TEXT = "link", "mention", "tag", "text"
MASTODON_LINK_CHARS = 30  # Mastodon's formatter shows a link's host and path cut to 30 characters, then "…"


@dataclass(frozen=True)
class Segment:
    kind: str  # text | link | mention | tag
    text: str  # as the feed shows it (Mastodon shortens links)
    over: bool = False  # past the platform's limit: it would be refused


@dataclass(frozen=True)
class AccountPreview:
    target: str
    count: int  # by the platform's first text limit, the one the counter shows
    limit: int
    unit: str
    segments: list[Segment] = field(default_factory=list)
    see_more: bool = False  # the feed cuts the text here and offers "see more"
    image_ratio: str = ""  # CSS aspect-ratio of the feed's image crop ("16 / 9"), "" for the image's own

    @property
    def ratio_class(self) -> str:
        return "ratio-" + self.image_ratio.replace(" / ", "x") if self.image_ratio else "ratio-own"

    def to_json(self) -> dict:
        data = asdict(self)
        data["seeMore"], data["imageRatio"] = data.pop("see_more"), data.pop("image_ratio")
        return data


# -- marking: which spans a platform turns into links, mentions and tags ---------------------------
def _facet_spans(text: str) -> list[tuple[int, int, str, str]]:
    """Bluesky's reference detection (publishing/facets.py): a mention is marked when its handle
    resolves, which the preview cannot know in advance, so every well-formed one is marked."""
    spans = [(s, e, {"kind": LINK}) for s, e, _ in facets._links(text)]
    spans += [(s, e, {"kind": MENTION}) for s, e, _ in facets._mentions(text)]
    spans += [(s, e, {"kind": TAG}) for s, e, _ in facets._tags(text)]
    return [(s, e, f["kind"], text[s:e]) for s, e, f in facets._without_overlaps(spans)]


def _mastodon_link_text(url: str) -> str:
    shown = url.split("://", 1)[-1].removeprefix("www.")
    return shown if len(shown) <= MASTODON_LINK_CHARS else shown[:MASTODON_LINK_CHARS] + "…"


def _mastodon_spans(text: str) -> list[tuple[int, int, str, str]]:
    """Mastodon's detection (publishing/text.py, the server's own rule): a link shows shortened,
    `@user@domain` shows as `@user`, hashtags are marked."""
    spans = []
    for start, end, replacement in counting._mastodon_entities(text, counting.MASTODON_DEFAULT_URL_LENGTH):
        is_mention = text[start] in "@＠"
        spans.append((start, end, MENTION if is_mention else LINK,
                      replacement if is_mention else _mastodon_link_text(text[start:end])))
    taken = [(s, e) for s, e, _, _ in spans]
    for match in counting.HASHTAG.finditer(text):
        if not any(s < match.end() and match.start() < e for s, e in taken):
            spans.append((match.start(), match.end(), TAG, match.group()))
    return sorted(spans)


def _caption_spans(text: str) -> list[tuple[int, int, str, str]]:
    """Instagram captions: @usernames and #hashtags are marked (the counters' own rules in
    publishing/text.py), a URL is plain text."""
    spans = [(m.start(), m.end(), MENTION, m.group()) for m in counting.MENTION.finditer(text)]
    spans += [(m.start(), m.end(), TAG, m.group()) for m in counting.HASHTAG.finditer(text)]
    return sorted(spans)


MARKINGS = {
    "facets": _facet_spans,
    "links": _facet_spans,  # a feed that links what looks like a link, a mention or a tag
    "mastodon": _mastodon_spans,
    "plain": lambda text: [],
    "tags": lambda text: _caption_spans(text),
}


def segments(text: str, *, marking: str, over_from: int) -> list[Segment]:
    """The text as segments; everything from code point `over_from` on is marked `over`."""
    found, position = [], 0
    for start, end, kind, shown in MARKINGS[marking](text):
        found += _split(text[position:start], TEXT, position, over_from)
        whole = end <= over_from  # a marked span cut by the limit shows its own text, in two parts
        found += [Segment(kind, shown)] if whole else _split(text[start:end], kind, start, over_from)
        position = end
    found += _split(text[position:], TEXT, position, over_from)
    return [segment for segment in found if segment.text]


def _split(part: str, kind: str, offset: int, over_from: int) -> list[Segment]:
    cut = max(0, min(len(part), over_from - offset))
    return [Segment(kind, part[:cut]), Segment(kind, part[cut:], over=True)]


def account_preview(*, target: str, rules: Rules, preview: Preview, text: str) -> AccountPreview:
    first = rules.text_limits[0]
    options = rules.counting_options.get(first.counting, {})
    count = counting.count_text(text, counting=first.counting, **options)
    over_from = counting.fitting_prefix(text, limit=first.limit, counting=first.counting, **options)
    see_more = False
    if preview.see_more_after is not None and over_from == len(text):
        cut = counting.fitting_prefix(text, limit=preview.see_more_after, counting="graphemes")
        text, see_more = text[:cut].rstrip(), cut < len(text)
    ratio = f"{preview.image_ratio[0]} / {preview.image_ratio[1]}" if preview.image_ratio else ""
    return AccountPreview(target=target, count=count, limit=first.limit, unit=first.unit,
                          segments=segments(text, marking=preview.marking, over_from=over_from),
                          see_more=see_more, image_ratio=ratio)
