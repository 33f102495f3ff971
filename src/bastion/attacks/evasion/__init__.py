"""Evasion attacks, one file each. Importing this package registers them all in ``ATTACKS``."""

from bastion.attacks.evasion.apgd import APGD, APGDTargeted
from bastion.attacks.evasion.cw import CarliniWagnerL2
from bastion.attacks.evasion.fgsm import FGSM
from bastion.attacks.evasion.hopskipjump import HopSkipJump
from bastion.attacks.evasion.pgd import PGD
from bastion.attacks.evasion.square import Square

__all__ = ["APGD", "APGDTargeted", "CarliniWagnerL2", "FGSM", "HopSkipJump", "PGD", "Square"]
