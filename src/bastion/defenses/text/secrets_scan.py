"""Secrets in a model's reply: provider keys, private keys, passwords in assignments and random-looking tokens.

:func:`find_secrets` is the ``secret`` family of :func:`~bastion.defenses.text.output.screen_output`. It finds
provider key formats (AWS access key ids, GitHub, Slack, Stripe live, Google API, OpenAI and Anthropic keys,
PEM private keys, JWTs), passwords in URLs (``postgres://user:PASSWORD@host``, unless the password is the word
``password`` or the like), ``password = "..."`` style assignments, quoted or, where the value reads as a password
and not as a name, unquoted (``DB_PASSWORD=hunter2hunter2``, ``password: correcthorsebatterystaple``; only the
value is redacted), and high-entropy strings:

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
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bastion.defenses.text.matches import Match, Taken, mask

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


_URL_PLACEHOLDERS = frozenset({"password", "passwd", "pass", "pwd", "secret", "token"})
_UNQUOTED_SYMBOL = re.compile(r"[^A-Za-z0-9_-]")


def _url_password(value: str) -> bool:
    """A password in a URL's ``user:password@`` part, unless it is the word ``password`` or the like (docs)."""
    return value.lower() not in _URL_PLACEHOLDERS


def _unquoted_password(value: str) -> bool:
    """An unquoted assignment's value that reads as a password rather than a name or a word: a letter with a digit
    or a symbol (``hunter2hunter2``, ``Tr0ub4dor&3``), or 16 letters or more (``correcthorsebatterystaple``);
    not an identifier such as ``get_token`` or ``settings_password_value``."""
    has_letter = any(c.isalpha() for c in value)
    if has_letter and (any(c.isdigit() for c in value) or _UNQUOTED_SYMBOL.search(value)):
        return True
    return len(value) >= 16 and value.isalpha()


_SECRET_WORDS = (r"(?:passw(?:or)?d|pwd|passphrase|secret(?:[_-]?key)?|api[_-]?key|access[_-]?key|"
                 r"private[_-]?key|(?:access|auth|refresh)[_-]?token|token|credentials?)")
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
    _SecretPattern("secret.url-credentials", re.compile(
        r"(?i)(?<![a-z0-9+.-])[a-z][a-z0-9+.-]{1,30}://[^\s:/@?#]{0,128}:([^\s:/@?#]{4,256})@[^\s/@:?#]"),
                   "a password in a URL's user:password@ part (a database or service connection string)",
                   group=1, check=_url_password),
    _SecretPattern("secret.assignment", re.compile(
        r"(?i)(?<![a-z0-9])" + _SECRET_WORDS + r"(?![a-z0-9_])"
        r"[\"']?\s{0,4}(?::=|=>|=|:)\s{0,4}([\"'`])([^\"'`\s]{8,256})\1"),
                   "a password, secret or token written out in an assignment", group=2),
    _SecretPattern("secret.assignment", re.compile(
        r"(?i)(?<![a-z0-9])" + _SECRET_WORDS + r"(?![a-z0-9_])"
        r"\s{0,4}(?::=|=>|=|:)[ \t]{0,4}([A-Za-z0-9!#$%&*+/=?@^_~-]{8,256})(?![A-Za-z0-9!#$%&*+/=?@^_~(.\[-])"),
                   "a password, secret or token written out in an unquoted assignment (an .env file, YAML)",
                   group=1, check=_unquoted_password),
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


def find_secrets(text: str, taken: Taken) -> list[Match]:
    """The secrets in ``text`` outside the spans in ``taken``; each one found is added to ``taken``."""
    found = [Match("secret", "secret.private-key", start, end, "a private key; it decrypts or signs as its owner",
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
            found.append(Match("secret", pattern.rule, start, end, pattern.reason, mask(value)))
    for m in _TOKEN.finditer(text):
        if taken.overlaps(m.start(), m.end()) or _PLACEHOLDER.search(m.group(), 0, _ENTROPY_SAMPLE):
            continue
        kind = _high_entropy_kind(text, m.start(), m.group())
        if kind is not None:
            taken.add(m.start(), m.end())
            found.append(Match("secret", "secret.high-entropy", m.start(), m.end(),
                                f"a random-looking {kind} string of {len(m.group())} characters, likely a key or token",
                                mask(m.group())))
    return found
