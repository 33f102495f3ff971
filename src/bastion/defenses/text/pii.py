"""Personal data in a model's reply: e-mail addresses, telephone numbers, payment card numbers and IBANs.

:func:`find_pii` is the ``pii`` family of :func:`~bastion.defenses.text.output.screen_output`. It finds
e-mail addresses; phone numbers written with a ``+`` country code (8 to 15 digits), North-American
``(415) 555-2671`` / ``415-555-2671``, or national numbers with a leading 0 and one consistent separator
(9 to 12 digits) — digits without separators or a ``+`` never count, so years, dates and order numbers do
not; payment card numbers of 13 to 19 digits, plain or grouped with spaces or dashes, that pass the Luhn
check and start with a major scheme's IIN at a length that scheme issues; IBANs of a known country at that
country's length that pass the mod-97 check.

Card numbers, IBANs and e-mail addresses are claimed before telephone numbers, so that digits inside one of
them are not also reported as a phone number.
"""

from __future__ import annotations

import re

from bastion.defenses.text.matches import Match, Taken, mask

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


def find_pii(text: str, taken: Taken) -> list[Match]:
    """The personal data in ``text`` outside the spans in ``taken``; each one found is added to ``taken``."""
    candidates: list[Match] = []
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        scheme = _card_scheme(digits)
        if scheme and _luhn_valid(digits):
            candidates.append(Match("pii", "pii.card-number", m.start(), m.end(),
                                     f"a {scheme} payment card number (its Luhn checksum is valid)", mask(m.group())))
    for m in _IBAN.finditer(text):
        end = _iban_end(text, m.start(), m.end())
        if end is not None:
            candidates.append(Match("pii", "pii.iban", m.start(), end, "a bank account number (IBAN, mod-97 valid)",
                                     mask(m.group())))
    for m in _EMAIL.finditer(text):
        candidates.append(Match("pii", "pii.email", m.start(), m.end(), "an e-mail address", mask(m.group())))
    for regex, fewest, most in ((_PHONE_INTERNATIONAL, 8, 15), (_PHONE_NANP, 10, 11), (_PHONE_TRUNK, 9, 12)):
        for m in regex.finditer(text):
            if _phone_ok(m.group(), fewest, most):
                candidates.append(Match("pii", "pii.phone", m.start(), m.end(), "a telephone number",
                                         mask(m.group())))
    found = []
    for match in candidates:  # cards, IBANs and e-mails before phones: a phone inside one is no phone
        if not taken.overlaps(match.start, match.end):
            taken.add(match.start, match.end)
            found.append(match)
    return found
