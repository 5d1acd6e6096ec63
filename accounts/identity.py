"""What a username is, as the sign-in limit and the look-alike check see it.

Two questions, two keys:
- `sign_in_key`: which counter an attempt to sign in as this name spends. Django's login forms
  NFKC-normalise the name before the backend looks it up, so `ａｄｍｉｎ`, `𝐚𝐝𝐦𝐢𝐧` and `ªdmin`
  all sign in as `admin`; they must spend admin's counter too (issue 13 #5).
- `lookalike_digest`: whether two names look the same. Unicode TR39's skeleton
  (https://www.unicode.org/reports/tr39/#Confusable_Detection) maps every character to the
  prototype of its confusable class (Cyrillic `а` -> `a`, `rn` <- `m`, `0` -> `O`); case is folded on
  top, as sign-up already treats `Bob` and `bob` as one name.
"""
import hashlib
import unicodedata
from functools import lru_cache

# TR39's "Highly Restrictive" level: one script, or one of these sets that real names mix
# (Japanese, Chinese with Bopomofo, Korean; each may include Latin). Common and Inherited
# characters (digits, `.`, `_`, `@`, combining marks) belong to every script.
_SCRIPTS_THAT_MIX = (
    {"LATIN", "HAN", "HIRAGANA", "KATAKANA"},
    {"LATIN", "HAN", "BOPOMOFO"},
    {"LATIN", "HAN", "HANGUL"},
)
_ANY_SCRIPT = {"COMMON", "INHERITED"}
_DIRECTION_MARKS = str.maketrans("", "", "\u200e\u200f")  # the data wraps right-to-left characters in them


def sign_in_key(username: str) -> str:
    """The identity an attempt to sign in with `username` is counted against."""
    folded = unicodedata.normalize("NFKC", username.strip()).casefold()
    return unicodedata.normalize("NFKC", folded)  # casefolding can leave non-NFKC text ("ſ" stays)


def mixes_scripts(username: str) -> bool:
    from confusable_homoglyphs import categories  # loads Unicode's tables (~0.1 s): only when needed

    scripts = categories.unique_aliases(unicodedata.normalize("NFKC", username)) - _ANY_SCRIPT
    return len(scripts) > 1 and not any(scripts <= allowed for allowed in _SCRIPTS_THAT_MIX)


def lookalike_digest(username: str) -> str:
    """A fixed-length digest of the name's case-folded TR39 skeleton: equal for look-alikes."""
    key = _skeleton(_skeleton(unicodedata.normalize("NFKC", username)).casefold())
    return hashlib.sha256(key.encode()).hexdigest()


def _skeleton(text: str) -> str:
    """TR39 skeleton: NFD, each character to its prototype, NFD again."""
    prototypes = _prototypes()
    mapped = "".join(prototypes.get(char, char) for char in unicodedata.normalize("NFD", text))
    return unicodedata.normalize("NFD", mapped)


@lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """Every confusable character -> the prototype of its class, from Unicode's confusables.txt.

    confusable_homoglyphs stores each `source -> prototype` line of confusables.txt in both
    directions, so a class is a star around its prototype: a source has one neighbour (its
    prototype), a prototype has all its sources. A prototype of several characters (`rn`) is never
    a source. When a class has two members, either can stand for it; the smaller is taken.
    """
    from confusable_homoglyphs import confusables  # loads Unicode's tables (~0.1 s): only when needed

    graph = {
        key.translate(_DIRECTION_MARKS): [entry["c"].translate(_DIRECTION_MARKS) for entry in entries]
        for key, entries in confusables.confusables_data.items()
    }
    prototypes = {}
    for char, neighbours in graph.items():
        if len(char) != 1 or len(neighbours) != 1:
            continue  # a sequence, or a prototype of several characters: maps to itself
        (other,) = neighbours
        if len(other) > 1 or len(graph.get(other, ())) > 1:
            prototypes[char] = other
        else:
            prototypes[char] = min(char, other)
    return prototypes
