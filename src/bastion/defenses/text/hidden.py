"""Hidden characters and look-alike letters: what hides a text from a reader or a keyword filter, undone.

:func:`assemble` applies NFKC, removes invisible characters (zero-width, soft hyphen, word joiner),
bidirectional controls, Unicode tag characters and runs of variation selectors, and folds look-alike letters
of other scripts to ASCII. It returns a :class:`Cleaned` text with a :class:`Mark` per technique seen (each
becomes a ``hidden-text`` finding) and the payloads that tag characters and variation selectors smuggle,
which :func:`~bastion.defenses.text.normalize.normalize` turns into views of their own. Routine uses (a
leading byte-order mark, flag emoji, joiners in Persian or Indic words, direction marks in right-to-left
text, Greek letters in scientific notation) are removed without a mark.

Hidden characters between an ASCII letter or digit and another visible character may stand for a space
(``ignore<U+200B>all<U+200B>previous``), and removing them glues the words together: the text is then also
given with each such run as a space (:attr:`Cleaned.spaced`), which ``normalize`` scans as one more view.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace

from bastion.defenses.text.decoders import readable
from bastion.defenses.text.findings import Finding, quote

# --- hidden characters ------------------------------------------------------------------------------------
_HIDDEN_RE = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufe00-\ufe0f\ufeff"
    "\U000e0000-\U000e007f\U000e0100-\U000e01ef]+"
)
# A run of hidden characters between an ASCII letter or digit and another visible character: inside a word it
# splits the word (removing it is right), between words it stands for a space (removing it glues them together).
_GLUING_RE = re.compile(f"(?<=[A-Za-z0-9]){_HIDDEN_RE.pattern}(?=\\S)|(?<=\\S){_HIDDEN_RE.pattern}(?=[A-Za-z0-9])")
# Zero-width (non-)joiners and spaces are routine in Persian, Indic or Thai words and inside emoji; they are
# counted only where they touch an ASCII letter or digit, which is where they split a word to evade a filter.
_JOINERS_RE = re.compile("(?<=[A-Za-z0-9])[\u200b-\u200d\u2060]+|[\u200b-\u200d\u2060]+(?=[A-Za-z0-9])")
_OTHER_INVISIBLE_RE = re.compile("[\u00ad\u180e\u2061-\u2064\ufeff]+")
# Direction marks are routine in right-to-left text; overrides and isolates are not.
_BIDI_MARKS_RE = re.compile("[\u200e\u200f\u061c]+")
_BIDI_CONTROLS_RE = re.compile("[\u202a-\u202e\u2066-\u2069]+")
_RTL_RE = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")
_TAGS_RE = re.compile("[\U000e0000-\U000e007f]+")
_FLAG_TAGS_RE = re.compile("(?<=\U0001f3f4)[\U000e0020-\U000e007e]{1,8}\U000e007f")  # Scotland, Wales flags
_SELECTORS_RE = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]{4,}")  # an emoji carries one; a run, data
# Tag characters U+E0020-E007E spell ASCII; variation selectors VS1-16 and VS17-256 spell bytes 0-15 and 16-255.
_TAGS_TO_ASCII = {code: (chr(code - 0xE0000) if 0xE0020 <= code <= 0xE007E else None)
                  for code in range(0xE0000, 0xE0080)}
_SELECTORS_TO_BYTES = {code: chr(index) for index, code in enumerate((*range(0xFE00, 0xFE10),
                                                                      *range(0xE0100, 0xE01F0)))}
_HIDDEN_REASONS = {
    "invisible": "{n} invisible character(s) (zero-width, soft hyphen, word joiner) were removed; they split "
                 "words so that filters miss them.",
    "bidi": "{n} bidirectional control character(s) were removed; they make a reader see a different text "
            "from the one a model reads.",
    "unicode-tags": "{n} Unicode tag character(s) carry ASCII text that no reader can see.",
    "variation-selectors": "{n} variation selector(s) carry bytes that no reader can see.",
    "homoglyph": "{n} word(s) mix Latin letters with look-alike letters of another script, a way past keyword "
                 "filters.",
}

# --- look-alike letters -----------------------------------------------------------------------------------
# Each pair is a look-alike followed by the ASCII letter it imitates. NFKC already folds fullwidth and
# mathematical alphanumerics, so only other scripts need a table.
_CONFUSABLE_PAIRS = (
    # Cyrillic
    "аa еe іi јj кk оo рp сc уy хx ѕs ԁd һh ӏl ԛq ԝw үy ѵv "
    "АA ВB ЕE ЅS ІI ЈJ КK МM НH ОO РP СC ТT УY ХX ԀD ԚQ ԜW ҮY ҺH ӀI ѴV "
    # Greek
    "αa γy ιi κk νv οo ρp υu χx ϳj "
    "ΑA ΒB ΕE ΖZ ΗH ΙI ΚK ΜM ΝN ΟO ΡP ΤT ΥY ΧX "
    # Latin and Armenian letters that pass for plain ones
    "ıi ȷj ɑa ɡg ɩi օo սu հh ոn"
)
_HOMOGLYPHS = str.maketrans({pair[0]: pair[1] for pair in _CONFUSABLE_PAIRS.split()})
_HOMOGLYPH_KEYS = frozenset(pair[0] for pair in _CONFUSABLE_PAIRS.split())
# A Greek letter next to Latin ones is routine in science (Cα, TNFα, IFNγ); inside a Latin word it is not.
_LOOKALIKE_NOT_GREEK_RE = re.compile(
    "[" + "".join(sorted(key for key in _HOMOGLYPH_KEYS if not "\u0370" <= key <= "\u03ff")) + "]")
_GREEK_INSIDE_LATIN_RE = re.compile("[A-Za-z][\u0370-\u03ff]+[A-Za-z]")
_STYLED_RE = re.compile("[\uff21-\uff3a\uff41-\uff5a\U0001d400-\U0001d7ff]")  # fullwidth and math letters
_LETTERS_RE = re.compile(r"[^\W\d_]+")
_ASCII_LETTER_RE = re.compile("[A-Za-z]")
_NATIVE_RE = re.compile("[\u0370-\u03ff\u0400-\u052f\u0530-\u058f]")  # Greek, Cyrillic, Armenian left over


@dataclass
class Mark:
    """One hiding technique seen in one text: how often, where first (a span of the clean text), what."""

    rule: str
    count: int
    span: tuple[int, int] | None
    evidence: str

    def finding(self, path: tuple[str, ...]) -> Finding:
        """This mark as a ``hidden-text`` finding of the view at ``path``."""
        return Finding(layer="normalize", category="hidden-text", rule=self.rule,
                       reason=_HIDDEN_REASONS[self.rule].format(n=self.count), evidence=self.evidence,
                       path=list(path), span=self.span)


@dataclass
class Cleaned:
    """A text after NFKC, hidden-character removal and homoglyph folding."""

    text: str
    marks: dict[str, Mark]
    counts: dict[str, int]
    hidden: list[tuple[str, str]]  # (technique, payload) smuggled in invisible characters
    spaced: str | None = None  # ``text`` with the hidden characters that may glue words as spaces; None: none do


def _render(text: str) -> str:
    """``text`` with hidden and non-ASCII letters written as ``<U+XXXX>`` so that a person can see them."""
    return "".join(f"<U+{ord(ch):04X}>" if _HIDDEN_RE.match(ch) or ch in _HOMOGLYPH_KEYS else ch for ch in text)


def _word_span(text: str, position: int, reach: int = 40) -> tuple[int, int]:
    """The word of ``text`` around ``position`` (at most ``reach`` characters either side)."""
    start, end = position, position
    while start > max(0, position - reach) and text[start - 1].isalnum():
        start -= 1
    while end < min(len(text), position + reach) and text[end].isalnum():
        end += 1
    return start, end


def _first(pattern: re.Pattern[str], text: str) -> tuple[int, int]:
    """How many characters ``pattern`` matches in ``text``, and where the first match starts (-1 if none)."""
    first = pattern.search(text)
    return (sum(map(len, pattern.findall(text))), first.start()) if first else (0, -1)


def _hidden_runs(text: str) -> tuple[dict[str, tuple[int, int]], list[tuple[str, str]]]:
    """Per technique, how many suspicious hidden characters ``text`` has and where the first is; and the
    payloads that tag characters and variation selectors smuggle.

    Each count is a C-level regular-expression pass, so a megabyte of scattered zero-width spaces is cheap.
    """
    rtl = bool(_RTL_RE.search(text))
    found = {"invisible": (0, -1), "bidi": _first(_BIDI_CONTROLS_RE, text), "unicode-tags": _first(_TAGS_RE, text),
             "variation-selectors": (0, -1)}
    for pattern in (_JOINERS_RE, _OTHER_INVISIBLE_RE) + (() if rtl else (_BIDI_MARKS_RE,)):
        rule = "bidi" if pattern is _BIDI_MARKS_RE else "invisible"
        found[rule] = _merge(found[rule], _first(pattern, text))
    payloads = [("unicode-tags", run.translate(_TAGS_TO_ASCII)) for run in _TAGS_RE.findall(text)]
    for match in _SELECTORS_RE.finditer(text):
        payload = readable(match.group().translate(_SELECTORS_TO_BYTES).encode("latin-1"))
        rule = "variation-selectors" if payload else "invisible"
        found[rule] = _merge(found[rule], (len(match.group()), match.start()))
        if payload:
            payloads.append(("variation-selectors", payload))
    return {rule: seen for rule, seen in found.items() if seen[0]}, payloads


def _merge(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """Two (count, first position) pairs as one."""
    firsts = [position for position in (a[1], b[1]) if position >= 0]
    return a[0] + b[0], min(firsts, default=-1)


def _strip_hidden(text: str) -> tuple[str, dict[str, Mark], list[tuple[str, str]], str | None]:
    """``text`` without hidden characters, a mark per technique seen, the payloads they smuggled, and ``text``
    with the runs of them that touch an ASCII letter or digit, between visible characters, as spaces (``None``
    when there is no such run)."""
    if not _HIDDEN_RE.search(text):
        return text, {}, [], None
    body = text[1:] if text.startswith("\ufeff") else text  # a leading byte-order mark is routine
    body = _FLAG_TAGS_RE.sub("", body)  # so is a flag spelled with tag characters
    found, payloads = _hidden_runs(body)
    clean = _HIDDEN_RE.sub("", body)
    gaps_as_spaces, gaps = _GLUING_RE.subn(" ", body)
    spaced = _HIDDEN_RE.sub("", gaps_as_spaces) if gaps else None
    marks = {}
    for rule, (count, first) in found.items():
        position = len(_HIDDEN_RE.sub("", body[:first]))
        smuggled = next((payload for technique, payload in payloads if technique == rule), None)
        evidence = smuggled or _render(body[max(0, first - 15):first + 45])
        marks[rule] = Mark(rule, count, _word_span(clean, position), quote(evidence))
    return clean, marks, payloads, spaced


def _fold_homoglyphs(text: str) -> tuple[str, int, Mark | None]:
    """``text`` with look-alike letters folded to ASCII in words that are then all ASCII.

    A word that mixes ASCII letters and look-alikes is always folded. A word made only of look-alikes is
    folded only when the text has no genuine Cyrillic, Greek or Armenian word, so that ordinary Russian or
    Greek text is left as it is. Returns the text, the number of letters folded, and a mark when some word
    mixed ASCII letters with look-alikes.
    """
    if text.isascii():
        return text, 0, None
    native = bool(_NATIVE_RE.search(text.translate(_HOMOGLYPHS)))
    folded_letters = 0
    mixed: list[tuple[int, int, str]] = []

    def fold(match: re.Match[str]) -> str:
        nonlocal folded_letters
        word = match.group()
        folded = word.translate(_HOMOGLYPHS)
        if word.isascii() or not folded.isascii() or (native and not _ASCII_LETTER_RE.search(word)):
            return word
        changed = sum(a != b for a, b in zip(word, folded, strict=True))
        folded_letters += changed
        if changed < len(word) and (_LOOKALIKE_NOT_GREEK_RE.search(word) or _GREEK_INSIDE_LATIN_RE.search(word)):
            mixed.append((*match.span(), word))
        return folded

    result = _LETTERS_RE.sub(fold, text)
    if not mixed:
        return result, folded_letters, None
    start, end, word = mixed[0]
    return result, folded_letters, Mark("homoglyph", len(mixed), (start, end), quote(_render(word)))


def _clean(raw: str) -> Cleaned:
    """NFKC, then hidden characters removed, then look-alike letters folded (this order keeps spans exact)."""
    styled = len(_STYLED_RE.findall(raw)) if not raw.isascii() else 0
    text = raw if unicodedata.is_normalized("NFKC", raw) else unicodedata.normalize("NFKC", raw)
    text, marks, hidden, spaced = _strip_hidden(text)
    text, folded, homoglyph = _fold_homoglyphs(text)
    if spaced is not None:
        spaced = _fold_homoglyphs(spaced)[0]
    if homoglyph:
        marks["homoglyph"] = homoglyph
    invisible = sum(marks[r].count for r in ("invisible", "unicode-tags", "variation-selectors") if r in marks)
    counts = {"invisible": invisible, "bidi": marks["bidi"].count if "bidi" in marks else 0,
              "homoglyphs": folded + styled}
    return Cleaned(text, marks, counts, hidden, spaced)


def assemble(pieces: list[str]) -> tuple[Cleaned, list[tuple[int, int]]]:
    """Clean each piece and join them with newlines; the spans say where each piece landed (in ``text``; the
    ``spaced`` text, where there is one, joins the pieces the same way)."""
    parts = [_clean(piece) for piece in pieces]
    marks: dict[str, Mark] = {}
    spans = []
    offset = 0
    for part in parts:
        spans.append((offset, offset + len(part.text)))
        for rule, mark in part.marks.items():
            if rule in marks:
                marks[rule].count += mark.count
            else:
                shifted = (mark.span[0] + offset, mark.span[1] + offset) if mark.span else None
                marks[rule] = replace(mark, span=shifted)
        offset += len(part.text) + 1
    counts = {key: sum(part.counts[key] for part in parts) for key in ("invisible", "bidi", "homoglyphs")}
    hidden = [payload for part in parts for payload in part.hidden]
    spaced = None
    if any(part.spaced is not None for part in parts):
        spaced = "\n".join(part.text if part.spaced is None else part.spaced for part in parts)
    return Cleaned("\n".join(part.text for part in parts), marks, counts, hidden, spaced), spans
