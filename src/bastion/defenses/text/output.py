"""The output guard: finds secrets, personal data and leaked system prompts in a model's reply, and redacts them.

:func:`screen_output` runs three families of checks over one reply and returns a :class:`Verdict` whose
``redacted`` text has every match replaced by ``[REDACTED:<rule>]``:

``secret``
    Provider key formats (AWS access key ids, GitHub, Slack, Stripe live, Google API, OpenAI and Anthropic keys,
    PEM private keys, JWTs), quoted ``password = "..."`` style assignments (only the value is redacted), and
    high-entropy strings:

    * a run of ``[A-Za-z0-9+/_-]`` of at least 20 characters (``=`` padding allowed at its end) that mixes digits,
      upper- and lower-case letters, has a Shannon entropy of at least ``min(4.5, log2(length) - 0.7)`` bits per
      character (random base64 sits above this about 95% of the time; a fixed 4.0 would miss half of the random
      20-character strings and flag long CamelCase names), and changes character class (upper, lower, digit,
      symbol) between at least a third of its neighbouring characters (about 64% for random strings, far fewer
      for identifiers such as ``HelloWorldExample12345``);
    * a single-case hex run of at least 32 characters with digits and letters and an entropy of at least
      3.0 bits per character, except a run of exactly 40 or 64 characters (a git commit SHA, a SHA-256 digest:
      replies quote these all the time) unless a secret word (key, secret, token, password, auth, ...) precedes
      it on its line.

    Not secrets, by decision: UUIDs (identifiers, not credentials), words and identifiers in one case or without
    digits, the payload of a ``base64,`` data URI, and placeholders (values containing ``example``, ``your``,
    ``xxxx``, ``changeme``, ``<``, ``${`` ...), such as AWS's documented ``AKIAIOSFODNN7EXAMPLE``.
``pii``
    E-mail addresses; phone numbers written with a ``+`` country code (8 to 15 digits), North-American
    ``(415) 555-2671`` / ``415-555-2671``, or national numbers with a leading 0 and one consistent separator
    (9 to 12 digits) — digits without separators or a ``+`` never count, so years, dates and order numbers do
    not; payment card numbers of 13 to 19 digits, plain or grouped with spaces or dashes, that pass the Luhn
    check and start with a major scheme's IIN at a length that scheme issues; IBANs of a known country at that
    country's length that pass the mod-97 check.
``canary``
    A canary token (see :func:`make_canary`) anywhere in the reply, also in another case or with up to four
    non-alphanumeric characters (spaces, zero-width characters, punctuation) between its characters; and, given
    the system prompt, any :data:`SHINGLE_WORDS` consecutive words of it repeated in the reply, compared as
    case-folded words so that whitespace, punctuation and line breaks do not matter.

Every regular expression runs in time linear in the text (no nested or overlapping quantifiers on the same
characters), so a reply of :data:`MAX_CHARS` characters takes about a second, whatever its content.
Matches that overlap an earlier, more specific secret match are dropped (an AWS key is not also reported as a
high-entropy string, nor the digits of a key as a card number).
"""

from __future__ import annotations

import bisect
import math
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from bastion.core.errors import InputError
from bastion.defenses.text.findings import Finding, Verdict, quote

#: The default limit on the characters one reply may have.
MAX_CHARS = 1_048_576
#: How many consecutive words of the system prompt in a reply count as a leak.
SHINGLE_WORDS = 8
#: The fewest letters and digits a canary token may have (shorter ones would match ordinary text).
MIN_CANARY_ALNUM = 8


@dataclass(frozen=True)
class _Match:
    category: str
    rule: str
    start: int
    end: int
    reason: str
    evidence: str

    def finding(self) -> Finding:
        return Finding(layer="output", category=self.category, rule=self.rule, reason=self.reason,
                       evidence=quote(self.evidence), span=(self.start, self.end))


class _Taken:
    """Non-overlapping spans already claimed, kept sorted so that an overlap test is a binary search."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self._starts, end)  # spans starting before `end`; the last of them ends latest
        return i > 0 and self._ends[i - 1] > start

    def add(self, start: int, end: int) -> None:
        i = bisect.bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._ends.insert(i, end)


def _mask(value: str) -> str:
    return value[:4] + "…"


# ---------------------------------------------------------------------------------------------- secrets

_PLACEHOLDER = re.compile(r"(?i)example|your|xxxx|placeholder|changeme|redacted|dummy|\*\*\*|\.\.\.|…|<|>|\$\{|\{\{")


def _has_digit_and_letter(value: str) -> bool:
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


@dataclass(frozen=True)
class _SecretPattern:
    rule: str
    regex: re.Pattern[str]
    reason: str
    group: int = 0  # the group holding the secret itself: only it is redacted
    check: Callable[[str], bool] | None = None


_PEM_HEADER = re.compile(r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----")

# Most specific first: a later pattern's match overlapping an earlier one is dropped.
_SECRET_PATTERNS = (
    _SecretPattern("secret.aws-access-key", re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"
                                                       r"(?![A-Za-z0-9])"),
                   "an AWS access key id; with its secret key it signs requests as that AWS identity"),
    _SecretPattern("secret.github-token", re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,}|"
                                                     r"github_pat_[A-Za-z0-9_]{22,})"),
                   "a GitHub token; it grants access to repositories and the account that made it"),
    _SecretPattern("secret.slack-token", re.compile(r"(?<![A-Za-z0-9])xox[bpars]-[A-Za-z0-9-]{10,}"),
                   "a Slack token; it reads and posts in the workspace that issued it", check=_has_digit_and_letter),
    _SecretPattern("secret.stripe-key", re.compile(r"(?<![A-Za-z0-9_])[rs]k_live_[A-Za-z0-9]{16,}"),
                   "a live Stripe secret or restricted key; it moves real money"),
    _SecretPattern("secret.google-api-key", re.compile(r"(?<![A-Za-z0-9_-])AIza[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])"),
                   "a Google API key; calls made with it are billed to its project"),
    _SecretPattern("secret.anthropic-key", re.compile(r"(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{32,}"),
                   "an Anthropic API key; calls made with it are billed to its owner", check=_has_digit_and_letter),
    _SecretPattern("secret.openai-key", re.compile(r"(?<![A-Za-z0-9_-])sk-(?:proj-|svcacct-|admin-)?"
                                                   r"[A-Za-z0-9_-]{32,}"),
                   "an OpenAI-style API key; calls made with it are billed to its owner", check=_has_digit_and_letter),
    _SecretPattern("secret.jwt", re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}"
                                            r"\.[A-Za-z0-9_-]{16,}"),
                   "a signed JSON Web Token; whoever holds it is logged in as its subject until it expires"),
    _SecretPattern("secret.assignment", re.compile(
        r"(?i)(?<![a-z0-9])(?:passw(?:or)?d|pwd|passphrase|secret(?:[_-]?key)?|api[_-]?key|access[_-]?key|"
        r"private[_-]?key|(?:access|auth|refresh)[_-]?token|token|credentials?)(?![a-z0-9_])"
        r"[\"']?\s{0,4}(?::=|=>|=|:)\s{0,4}([\"'`])([^\"'`\s]{8,256})\1"),
                   "a password, secret or token written out in an assignment", group=2),
)


def _private_keys(text: str) -> Iterator[tuple[int, int, str]]:
    """PEM private key blocks, header to footer; a block with no footer runs to the end of the text."""
    position = 0
    while (header := _PEM_HEADER.search(text, position)) is not None:
        footer = text.find("-----END", header.end())
        if footer < 0:
            yield header.start(), len(text), header.group()
            return
        close = text.find("-----", footer + 8, footer + 80)
        end = close + 5 if close >= 0 else footer + 8
        yield header.start(), end, header.group()
        position = end


_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{20,}={0,2}")
_HEX = frozenset("0123456789abcdefABCDEF")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SECRET_WORD = re.compile(r"(?i)key|secret|token|passw|pwd|credential|auth|bearer")
_DIGEST_LENGTHS = (40, 64)
_ENTROPY_SAMPLE = 4096  # a long token is judged by its first characters


def _entropy(value: str) -> float:
    """Shannon entropy of ``value``'s characters, in bits per character."""
    n = len(value)
    return -sum(count / n * math.log2(count / n) for count in Counter(value).values())


def _char_class(c: str) -> int:
    return 0 if c.isupper() else 1 if c.islower() else 2 if c.isdigit() else 3


def _high_entropy_kind(text: str, start: int, token: str) -> str | None:
    """``"base64"`` or ``"hex"`` when ``token`` (found at ``start``) looks like a random secret, else ``None``."""
    bare = token.rstrip("=")[:_ENTROPY_SAMPLE]
    if _UUID.fullmatch(bare) or text.endswith("base64,", 0, start):
        return None
    if set(bare) <= _HEX and (bare == bare.lower() or bare == bare.upper()):
        if len(bare) < 32 or not _has_digit_and_letter(bare) or _entropy(bare) < 3.0:
            return None
        if len(bare) in _DIGEST_LENGTHS:
            line_start = max(text.rfind("\n", 0, start) + 1, start - 80)
            if not _SECRET_WORD.search(text, line_start, start):
                return None
        return "hex"
    if not (any(c.isdigit() for c in bare) and any(c.isupper() for c in bare) and any(c.islower() for c in bare)):
        return None
    if _entropy(bare) < min(4.5, math.log2(len(bare)) - 0.7):
        return None
    classes = [_char_class(c) for c in bare]
    changes = sum(a != b for a, b in zip(classes, classes[1:], strict=False))
    return "base64" if changes * 3 >= len(bare) - 1 else None


def _find_secrets(text: str, taken: _Taken) -> list[_Match]:
    found = [_Match("secret", "secret.private-key", start, end, "a private key; it decrypts or signs as its owner",
                    header) for start, end, header in _private_keys(text)]
    for match in found:
        taken.add(match.start, match.end)
    for pattern in _SECRET_PATTERNS:
        for m in pattern.regex.finditer(text):
            value = m.group(pattern.group)
            start, end = m.span(pattern.group)
            if _PLACEHOLDER.search(value) or (pattern.check and not pattern.check(value)) or taken.overlaps(start, end):
                continue
            taken.add(start, end)
            found.append(_Match("secret", pattern.rule, start, end, pattern.reason, _mask(value)))
    for m in _TOKEN.finditer(text):
        if taken.overlaps(m.start(), m.end()) or _PLACEHOLDER.search(m.group(), 0, _ENTROPY_SAMPLE):
            continue
        kind = _high_entropy_kind(text, m.start(), m.group())
        if kind is not None:
            taken.add(m.start(), m.end())
            found.append(_Match("secret", "secret.high-entropy", m.start(), m.end(),
                                f"a random-looking {kind} string of {len(m.group())} characters, likely a key or token",
                                _mask(m.group())))
    return found


# -------------------------------------------------------------------------------------------------- PII

_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,24}(?![A-Za-z0-9-])")
_PHONE_INTERNATIONAL = re.compile(r"(?<![\w+])\+[1-9][\d ().-]{6,22}\d(?!\d)")
_PHONE_NANP = re.compile(r"(?<![\w+.-])(?:1[ .-])?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-]|[.,]\d)")
_PHONE_TRUNK = re.compile(r"(?<![\w+.-])0\d{1,4}([ .-])\d{2,8}(?:\1\d{2,8}){0,3}(?![\w-]|[.,]\d)")
_CARD = re.compile(r"(?<![\d.,-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?|\d{4}([ -])\d{6}\2\d{4,5})"
                   r"(?!\d|[.,]\d)")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}")

# (scheme, first IIN, last IIN, IIN digits, lengths issued)
_CARD_SCHEMES = (
    ("Visa", 4, 4, 1, (13, 16, 19)),
    ("Mastercard", 51, 55, 2, (16,)), ("Mastercard", 2221, 2720, 4, (16,)),
    ("American Express", 34, 34, 2, (15,)), ("American Express", 37, 37, 2, (15,)),
    ("Discover", 6011, 6011, 4, (16, 19)), ("Discover", 644, 649, 3, (16, 19)), ("Discover", 65, 65, 2, (16, 19)),
    ("JCB", 3528, 3589, 4, (16, 17, 18, 19)),
    ("Diners Club", 300, 305, 3, (14, 16, 19)), ("Diners Club", 36, 36, 2, (14, 16, 19)),
    ("Diners Club", 38, 39, 2, (16, 19)),
    ("UnionPay", 62, 62, 2, (16, 17, 18, 19)),
)

# Country code and IBAN length, from the SWIFT IBAN registry.
_IBAN_LENGTHS = {entry[:2]: int(entry[2:]) for entry in (
    "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DK18 DO28 EE20 EG29 ES24 FI18 "
    "FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 "
    "LU20 LV21 MC27 MD24 ME22 MK19 MR27 MT31 MU30 NL18 NO15 PK24 PL28 PS29 PT25 QA29 RO24 RS22 SA24 SC31 SE24 SI19 "
    "SK24 SM27 ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20").split()}


def _luhn_valid(digits: str) -> bool:
    """Whether a string of decimal digits passes the Luhn checksum that payment card numbers carry."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _card_scheme(digits: str) -> str | None:
    for scheme, first, last, width, lengths in _CARD_SCHEMES:
        if len(digits) in lengths and first <= int(digits[:width]) <= last:
            return scheme
    return None


def _iban_end(text: str, start: int, end: int) -> int | None:
    """Where the IBAN starting at ``start`` ends, or ``None`` when the text there is no valid IBAN."""
    length = _IBAN_LENGTHS.get(text[start:start + 2])
    if length is None:
        return None
    compact, position = [], start
    while position < end and len(compact) < length:
        if text[position] != " ":
            compact.append(text[position])
        position += 1
    if len(compact) < length or (position < len(text) and text[position].isalnum()):
        return None
    rearranged = "".join(compact[4:] + compact[:4])
    return position if int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1 else None


def _phone_ok(number: str, fewest: int, most: int) -> bool:
    digits = sum(c.isdigit() for c in number)
    parens = number.count("(")
    return (fewest <= digits <= most and parens == number.count(")") and parens <= 1
            and re.search(r"[ .-]{2}|\(\)", number) is None)


def _find_pii(text: str, taken: _Taken) -> list[_Match]:
    candidates: list[_Match] = []
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        scheme = _card_scheme(digits)
        if scheme and _luhn_valid(digits):
            candidates.append(_Match("pii", "pii.card-number", m.start(), m.end(),
                                     f"a {scheme} payment card number (its Luhn checksum is valid)", _mask(m.group())))
    for m in _IBAN.finditer(text):
        end = _iban_end(text, m.start(), m.end())
        if end is not None:
            candidates.append(_Match("pii", "pii.iban", m.start(), end, "a bank account number (IBAN, mod-97 valid)",
                                     _mask(m.group())))
    for m in _EMAIL.finditer(text):
        candidates.append(_Match("pii", "pii.email", m.start(), m.end(), "an e-mail address", _mask(m.group())))
    for regex, fewest, most in ((_PHONE_INTERNATIONAL, 8, 15), (_PHONE_NANP, 10, 11), (_PHONE_TRUNK, 9, 12)):
        for m in regex.finditer(text):
            if _phone_ok(m.group(), fewest, most):
                candidates.append(_Match("pii", "pii.phone", m.start(), m.end(), "a telephone number",
                                         _mask(m.group())))
    found = []
    for match in candidates:  # cards, IBANs and e-mails before phones: a phone inside one is no phone
        if not taken.overlaps(match.start, match.end):
            taken.add(match.start, match.end)
            found.append(match)
    return found


# ----------------------------------------------------------------------------------------------- canary

_INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
_WORD = re.compile(rf"\w+(?:[{_INVISIBLE}]+\w+)*")
_DROP_INVISIBLE = str.maketrans("", "", _INVISIBLE)


def make_canary(prefix: str = "bastion-canary") -> str:
    """A fresh random canary token to plant in a system prompt: ``"<prefix>-<24 hex digits>"``.

    Args:
        prefix: a readable label without whitespace (default ``"bastion-canary"``); ``""`` gives the hex alone.

    Returns:
        the token (96 random bits from :func:`secrets.token_hex`). Pass it to ``screen_output(canaries=[...])``:
        a reply that contains it has seen the system prompt.
    """
    if not isinstance(prefix, str) or any(c.isspace() for c in prefix):
        raise InputError(f"the canary prefix {prefix!r} must be a string without whitespace, e.g. 'bastion-canary'")
    token = secrets.token_hex(12)
    return f"{prefix}-{token}" if prefix else token


def _canary_regex(canary: str) -> re.Pattern[str]:
    # Leaks get mangled: any case, and up to four non-alphanumerics (spaces, zero-width, dashes) between characters.
    return re.compile(r"[\W_]{0,4}".join(re.escape(c) for c in canary if c.isalnum()), re.IGNORECASE)


def _find_canaries(text: str, canaries: Sequence[str]) -> list[_Match]:
    return [_Match("canary", "canary.token", m.start(), m.end(),
                   "the reply contains a canary token planted in the system prompt, so the prompt leaked", m.group())
            for canary in canaries for m in _canary_regex(canary).finditer(text)]


def _fold(word: str) -> str:
    """A word as compared with the system prompt's: case-folded, without zero-width characters."""
    return word.translate(_DROP_INVISIBLE).casefold()


def _find_prompt_leaks(text: str, system_prompt: str) -> list[_Match]:
    prompt = [_fold(m.group()) for m in _WORD.finditer(system_prompt)]
    n = SHINGLE_WORDS
    if len(prompt) < n:  # a short prompt is mostly common phrases: overlap would not mean a leak
        return []
    shingles = {tuple(prompt[i:i + n]) for i in range(len(prompt) - n + 1)}
    vocabulary = set(prompt)
    found: list[_Match] = []
    stretch: list[tuple[str, int, int]] = []  # consecutive reply words that all occur in the prompt
    for m in _WORD.finditer(text):
        key = _fold(m.group())
        if key in vocabulary:
            stretch.append((key, m.start(), m.end()))
        elif stretch:
            if len(stretch) >= n:
                found += _verbatim_runs(text, stretch, shingles)
            stretch = []
    return found + _verbatim_runs(text, stretch, shingles)


def _verbatim_runs(text: str, words: list[tuple[str, int, int]], shingles: set[tuple[str, ...]]) -> list[_Match]:
    """One match per maximal run of ``words`` covered by shingles of the system prompt."""
    n = SHINGLE_WORDS
    keys = [word for word, _, _ in words]
    runs: list[list[int]] = []  # [first word, stop word) of each run
    for i in range(len(keys) - n + 1):
        if tuple(keys[i:i + n]) in shingles:
            if runs and i <= runs[-1][1]:
                runs[-1][1] = i + n
            else:
                runs.append([i, i + n])
    matches = []
    for first, stop in runs:
        start, end = words[first][1], words[stop - 1][2]
        matches.append(_Match("canary", "canary.system-prompt", start, end,
                              f"the reply repeats {stop - first} consecutive words of the system prompt verbatim",
                              text[start:end]))
    return matches


# ----------------------------------------------------------------------------------------------- screen


def _check_arguments(text: object, canaries: object, system_prompt: object, max_chars: object) -> None:
    if not isinstance(text, str):
        raise InputError(f"the text to screen must be a str, not {type(text).__name__}; decode bytes first")
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise InputError(f"max_chars must be a positive integer, not {max_chars!r}")
    if len(text) > max_chars:
        raise InputError(f"the text is {len(text)} characters, over the limit of {max_chars}; screen it in parts "
                         f"or raise max_chars")
    if isinstance(canaries, str) or not isinstance(canaries, Sequence):
        raise InputError("canaries must be a list or tuple of tokens, not a single string; pass canaries=[token]")
    for canary in canaries:
        if not isinstance(canary, str) or sum(c.isalnum() for c in canary) < MIN_CANARY_ALNUM:
            raise InputError(f"the canary {canary!r} needs at least {MIN_CANARY_ALNUM} letters or digits to be "
                             f"told apart from ordinary text; make one with make_canary()")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise InputError(f"system_prompt must be a str or None, not {type(system_prompt).__name__}")


def _redact(text: str, matches: list[_Match]) -> str:
    """``text`` with each match replaced by ``[REDACTED:<rule>]``; overlapping matches merge under the first rule."""
    pieces, position, label, span_start = [], 0, "", -1
    for match in sorted(matches, key=lambda m: (m.start, -m.end)):
        if span_start >= 0 and match.start < position:
            position = max(position, match.end)
            continue
        if span_start >= 0:
            pieces.append(f"[REDACTED:{label}]")
        pieces.append(text[position:match.start])
        span_start, position, label = match.start, match.end, match.rule
    if span_start >= 0:
        pieces.append(f"[REDACTED:{label}]")
    pieces.append(text[position:])
    return "".join(pieces)


def screen_output(text: str, *, canaries: Sequence[str] = (), system_prompt: str | None = None,
                  max_chars: int = MAX_CHARS) -> Verdict:
    """Screen a model's reply for secrets, personal data and system-prompt leakage, and redact what is found.

    Args:
        text: the reply, as sent to the user.
        canaries: canary tokens planted in the system prompt (see :func:`make_canary`); each needs at least
            :data:`MIN_CANARY_ALNUM` letters or digits. Default: none.
        system_prompt: the system prompt the reply was generated under; when given, :data:`SHINGLE_WORDS`
            consecutive words of it in the reply are a leak. Default ``None`` (not checked).
        max_chars: the longest text accepted, in characters (default :data:`MAX_CHARS`, 1 MiB).

    Returns:
        a :class:`Verdict`: ``flagged`` when anything was found, ``score`` 1.0 or 0.0, the ``categories``
        (``"secret"``, ``"pii"``, ``"canary"``), one finding per match (layer ``"output"``, ordered by position,
        secrets and PII masked to their first four characters in ``evidence``), ``redacted`` (the text with every
        match replaced by ``[REDACTED:<rule>]``) and ``stats={"chars": len(text)}``.

    Raises:
        InputError: ``text`` is not a str or is longer than ``max_chars``; a canary is too short; ``canaries``
            is a single string.
    """
    _check_arguments(text, canaries, system_prompt, max_chars)
    taken = _Taken()
    matches = _find_canaries(text, canaries)
    if system_prompt:
        matches += _find_prompt_leaks(text, system_prompt)
    matches += _find_secrets(text, taken)
    matches += _find_pii(text, taken)
    matches.sort(key=lambda m: (m.start, m.end))
    return Verdict(flagged=bool(matches), score=1.0 if matches else 0.0,
                   categories=sorted({m.category for m in matches}), findings=[m.finding() for m in matches],
                   redacted=_redact(text, matches), stats={"chars": len(text)})
