"""Attacks. ``ATTACKS`` holds every registered evasion attack by name."""

from bastion.attacks import evasion  # noqa: F401  (registers the attacks)
from bastion.attacks.base import ATTACKS, EvasionAttack

__all__ = ["ATTACKS", "EvasionAttack"]
