"""Exceptions with messages a user can act on. Every input check raises one of these."""

from __future__ import annotations


class BastionError(Exception):
    """Base class of every error bastion raises on purpose."""


class InputError(BastionError, ValueError):
    """Bad user input: a wrong shape, an out-of-range value, a malformed file. Says what to fix."""


#: File suffixes of pickles, which bastion refuses to load (unpickling can run arbitrary code).
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib"})


class UnsafeFileError(BastionError):
    """A file bastion refuses to load because loading it could run code (a pickle)."""


class CapabilityError(BastionError):
    """An attack needs more access to a model than the model or the threat model allows."""


class ConfigError(BastionError, ValueError):
    """An unknown suite, attack, norm or option."""
