"""Poisoning attacks: label flipping and backdoors (BadNets patch, blended pattern), and their success rate.

They generate poisoned training sets with an exact account of what was changed (:class:`PoisonedSet`),
to measure a backdoor's attack success rate and to test the poison detectors in
:mod:`bastion.defenses.poison`.
"""

from bastion.attacks.poisoning.badnets import BadNets
from bastion.attacks.poisoning.base import BackdoorAttack, PoisonedSet, PoisoningAttack, attack_success_rate
from bastion.attacks.poisoning.blended import Blended
from bastion.attacks.poisoning.label_flip import LabelFlip

__all__ = ["BackdoorAttack", "BadNets", "Blended", "LabelFlip", "PoisonedSet", "PoisoningAttack",
           "attack_success_rate"]
