"""One rule engine, fed by each provider's declared rules (publishing/interface.py `Rules`).

The server's check is authoritative; the composer's live counter calls the same counting
functions. A problem names the account, the rule and the numbers ("Bluesky: 312 of 300
characters"), in the API's shape {target, rule, message, limit, actual}.
"""
from dataclasses import asdict, dataclass

from . import text as counting
from .credentials import connection_problem
from .interface import Rules, publisher_for, publishing_target


@dataclass(frozen=True)
class Problem:
    target: str | None
    rule: str
    message: str
    limit: int | None = None
    actual: int | None = None

    def to_json(self) -> dict:
        return asdict(self)


def check_post(*, account, targets: list[str], text: str, overrides: dict, media: list) -> list[Problem]:
    """Every problem of the post for every target; an empty list means it may be queued.

    `account`: the user's SocialAccount; `media`: the user's MediaFile rows, in order.
    """
    problems = []
    for name in targets:
        provider = publishing_target(name)
        publisher = publisher_for(provider) if provider else None
        if publisher is None:
            label = provider.label if provider else name
            problems.append(Problem(name, "platform", f"Hayon cannot publish to {label}."))
            continue
        doc = account.document(provider.name)
        reason = connection_problem(provider, doc)
        if reason:
            problems.append(Problem(name, "connection", reason))
            continue
        own_text = (overrides.get(name) or {}).get("text", text)
        problems += check_target(label=provider.label, target=name, rules=publisher.rules_for(doc),
                                 text=own_text, media=media)
    return problems


def check_target(*, label: str, target: str, rules: Rules, text: str, media: list) -> list[Problem]:
    problems = []
    if not text.strip() and not media:
        problems.append(Problem(target, "empty", f"{label}: write something or add an image."))
    for limit in rules.text_limits:
        actual = counting.count_text(text, counting=limit.counting, **rules.counting_options.get(limit.counting, {}))
        if actual > limit.limit:
            problems.append(Problem(target, limit.rule, f"{label}: {actual:,} of {limit.limit:,} {limit.unit}.",
                                    limit.limit, actual))
    if len(media) > rules.max_images:
        problems.append(Problem(target, "media_count", f"{label}: {len(media)} of {rules.max_images} images.",
                                rules.max_images, len(media)))
    if len(media) < rules.min_images:
        problems.append(Problem(target, "media_required", f"{label} needs at least {rules.min_images} image(s).",
                                rules.min_images, len(media)))
    for position, item in enumerate(media, start=1):
        if item.mime_type not in rules.image_types:
            problems.append(Problem(target, "media_type", f"{label} does not take {item.mime_type} (image {position})."))
        if rules.max_alt_chars is not None and counting.graphemes(item.alt) > rules.max_alt_chars:
            actual = counting.graphemes(item.alt)
            problems.append(Problem(target, "alt_text", f"{label}: alt text of image {position} is {actual:,} of "
                                    f"{rules.max_alt_chars:,} characters.", rules.max_alt_chars, actual))
    return problems

