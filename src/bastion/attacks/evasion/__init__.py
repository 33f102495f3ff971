"""Evasion attacks, one file each. Importing this package registers them all in ``ATTACKS``."""

from bastion.attacks.evasion.fgsm import FGSM
from bastion.attacks.evasion.pgd import PGD

__all__ = ["FGSM", "PGD"]
