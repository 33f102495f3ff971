"""The output guard: finds secrets, personal data and leaked system prompts in a model's reply, and redacts them.

:func:`screen_output` runs three families of checks over one reply and returns a :class:`Verdict` whose
``redacted`` text has every match replaced by ``[REDACTED:<rule>]``:

``secret``
    Provider key formats (AWS access key ids, GitHub, Slack, Stripe live, Google API, OpenAI and Anthropic keys,
    PEM private keys, JWTs), quoted ``password = "..."`` style assignments (only the value is redacted), and
    high-entropy strings; :mod:`bastion.defenses.text.secrets_scan` says what counts and what, by decision,
    does not.
``pii``
    E-mail addresses, telephone numbers, payment card numbers (Luhn-valid, of a major scheme) and IBANs
    (mod-97 valid); :mod:`bastion.defenses.text.pii` says which forms count.
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

import re
import secrets
from collections.abc import Sequence

from bastion.core.errors import InputError
from bastion.defenses.text.findings import Verdict
from bastion.defenses.text.limits import check_text
from bastion.defenses.text.matches import Match, Taken, mask
from bastion.defenses.text.pii import find_pii
from bastion.defenses.text.secrets_scan import find_secrets

#: The default limit on the characters one reply may have.
MAX_CHARS = 1_048_576
#: How many consecutive words of the system prompt in a reply count as a leak.
SHINGLE_WORDS = 8
#: The fewest letters and digits a canary token may have (shorter ones would match ordinary text).
MIN_CANARY_ALNUM = 8


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


def _find_canaries(text: str, canaries: Sequence[str]) -> list[Match]:
    return [Match("canary", "canary.token", m.start(), m.end(),
                   "the reply contains a canary token planted in the system prompt, so the prompt leaked",
                   mask(m.group()))
            for canary in canaries for m in _canary_regex(canary).finditer(text)]


def _fold(word: str) -> str:
    """A word as compared with the system prompt's: case-folded, without zero-width characters."""
    return word.translate(_DROP_INVISIBLE).casefold()


def _find_prompt_leaks(text: str, system_prompt: str) -> list[Match]:
    prompt = [_fold(m.group()) for m in _WORD.finditer(system_prompt)]
    n = SHINGLE_WORDS
    if len(prompt) < n:  # a short prompt is mostly common phrases: overlap would not mean a leak
        return []
    shingles = {tuple(prompt[i:i + n]) for i in range(len(prompt) - n + 1)}
    vocabulary = set(prompt)
    found: list[Match] = []
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


def _verbatim_runs(text: str, words: list[tuple[str, int, int]], shingles: set[tuple[str, ...]]) -> list[Match]:
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
        matches.append(Match("canary", "canary.system-prompt", start, end,
                              f"the reply repeats {stop - first} consecutive words of the system prompt verbatim",
                              text[start:end]))
    return matches


# ----------------------------------------------------------------------------------------------- screen


def _check_arguments(text: object, canaries: object, system_prompt: object, max_chars: object) -> None:
    if not isinstance(text, str):
        raise InputError(f"the text to screen must be a str, not {type(text).__name__}; decode bytes first")
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise InputError(f"max_chars must be a positive integer, not {max_chars!r}")
    check_text(text, max_chars, "text")
    if isinstance(canaries, str) or not isinstance(canaries, Sequence):
        raise InputError("canaries must be a list or tuple of tokens, not a single string; pass canaries=[token]")
    for canary in canaries:
        if not isinstance(canary, str) or sum(c.isalnum() for c in canary) < MIN_CANARY_ALNUM:
            raise InputError(f"the canary {canary!r} needs at least {MIN_CANARY_ALNUM} letters or digits to be "
                             "told apart from ordinary text; make one with `bastion guard canary` (make_canary() in "
                             "Python)")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise InputError(f"system_prompt must be a str or None, not {type(system_prompt).__name__}")


def _redact(text: str, matches: list[Match]) -> str:
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
        secrets, PII and canary tokens masked to their first four characters in ``evidence``, so that logs of the
        verdicts do not spread them), ``redacted`` (the text with every match replaced by ``[REDACTED:<rule>]``)
        and ``stats={"chars": len(text)}``.

    Raises:
        InputError: ``text`` is not a str or is longer than ``max_chars``; a canary is too short; ``canaries``
            is a single string.
    """
    _check_arguments(text, canaries, system_prompt, max_chars)
    taken = Taken()
    matches = _find_canaries(text, canaries)
    if system_prompt:
        matches += _find_prompt_leaks(text, system_prompt)
    matches += find_secrets(text, taken)
    matches += find_pii(text, taken)
    matches.sort(key=lambda m: (m.start, m.end))
    return Verdict(flagged=bool(matches), score=1.0 if matches else 0.0,
                   categories=sorted({m.category for m in matches}), findings=[m.finding() for m in matches],
                   redacted=_redact(text, matches), stats={"chars": len(text)})
