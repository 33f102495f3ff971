"""What a text screen accepts: a string of valid Unicode, up to a length limit."""

from __future__ import annotations

from bastion.core.errors import InputError


def check_text(text: object, max_chars: int, what: str) -> None:
    """Raise ``InputError`` unless ``text`` is a string of at most ``max_chars`` characters of valid Unicode."""
    if not isinstance(text, str):
        raise InputError(f"the {what} must be a string, got {type(text).__name__}")
    if len(text) > max_chars:
        raise InputError(f"the {what} is {len(text):,} characters, over the limit of {max_chars:,}: screen it in "
                         "parts, or raise the limit (--max-chars, or max_chars in the API)")
    check_unicode(text, f"the {what}")


def check_unicode(text: str, what: str) -> None:
    """Raise ``InputError`` when ``text`` holds a lone surrogate (U+D800..U+DFFF), which no UTF-8 text can: bytes
    that are not UTF-8, decoded with ``surrogateescape`` (as Python reads arguments and some standard inputs), or
    a JSON ``\\udc80`` escape. The tokenizer cannot read such a string."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InputError(f"{what} is not valid Unicode text: character {error.start + 1:,} is {text[error.start]!r}, "
                         "a lone surrogate (bytes that are not UTF-8 read as text); convert it to UTF-8 first"
                         ) from None
