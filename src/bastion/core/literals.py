"""The threat model's literal types, in a module that imports nothing heavy: the CLI's option types use them.

:mod:`bastion.core.threat` re-exports both; import them from there in library code.
"""

from __future__ import annotations

from typing import Literal

#: Perturbation norm: ``"linf"`` or ``"l2"``.
Norm = Literal["linf", "l2"]
#: What an attacker sees: ``"white"`` (gradients), ``"scores"`` (output scores) or ``"labels"`` (the top label).
Access = Literal["white", "scores", "labels"]
