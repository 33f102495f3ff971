"""Core contracts: threat model, typed records, plugin registry, seeding, errors. Imports nothing else from bastion."""

from bastion.core.errors import (
    BastionError,
    CapabilityError,
    ConfigError,
    InputError,
    UnsafeFileError,
)
from bastion.core.records import AttackResult, ScanRecord
from bastion.core.threat import ThreatModel

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
