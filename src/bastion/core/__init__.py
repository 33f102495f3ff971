"""Core contracts: threat model, typed records, plugin registry, seeding, errors. Imports nothing else from bastion.

The names below are loaded on first use (PEP 562 module ``__getattr__``): ``bastion.core.records``
imports torch, and importing ``bastion.core.errors`` (as the CLI does at start-up) must not.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bastion.core.errors import BastionError, CapabilityError, ConfigError, InputError, UnsafeFileError
    from bastion.core.records import AttackResult, ScanRecord
    from bastion.core.threat import ThreatModel

#: Exported name -> the module that defines it.
_EXPORTS = {
    "AttackResult": "bastion.core.records",
    "BastionError": "bastion.core.errors",
    "CapabilityError": "bastion.core.errors",
    "ConfigError": "bastion.core.errors",
    "InputError": "bastion.core.errors",
    "ScanRecord": "bastion.core.records",
    "ThreatModel": "bastion.core.threat",
    "UnsafeFileError": "bastion.core.errors",
}

__all__ = [
    "AttackResult",
    "BastionError",
    "CapabilityError",
    "ConfigError",
    "InputError",
    "ScanRecord",
    "ThreatModel",
    "UnsafeFileError",
]


def __getattr__(name: str) -> Any:
    """Import the module defining ``name`` on first access and cache the value here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
