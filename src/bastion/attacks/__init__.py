"""Attacks. ``ATTACKS`` holds every registered evasion attack by name."""

from bastion.attacks.base import ATTACKS, EvasionAttack
from bastion.attacks import evasion  # noqa: F401  (registers the attacks)

__all__ = ["ATTACKS", "EvasionAttack"]
