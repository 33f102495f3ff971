"""What a client is shown, by output policy, as Open Inference Protocol v2 output tensors.

- ``full``: ``probabilities`` FP32 ``[N, C]`` and ``label`` INT64 ``[N]``.
- ``top-k``: the ``k`` largest probabilities kept, the rest zero, plus ``label``.
- ``rounded``: probabilities rounded to ``decimals`` places (the top class kept on top), plus ``label``.
- ``label``: ``label`` only (the hardest output to extract a model from).

Rounding and top-k are bastion's output defenses (``bastion.defenses.output``), so what the gateway
serves is what ``bastion scan`` measured against.
"""

from __future__ import annotations

from typing import Any

import torch

from bastion.defenses.output import LabelOnly, Rounding, TopK
from bastion.defenses.output.base import PostProcessor
from bastion.gateway.policy import OutputRules


def postprocessor(policy: str, rules: OutputRules) -> PostProcessor | None:
    """The output defense for ``policy`` (``None`` for ``full``)."""
    if policy == "top-k":
        return TopK(rules.top_k)
    if policy == "rounded":
        return Rounding(rules.decimals)
    if policy == "label":
        return LabelOnly()
    return None


def render_outputs(probabilities: torch.Tensor, policy: str, rules: OutputRules) -> list[dict[str, Any]]:
    """OIP v2 output tensors for ``probabilities`` ``(N, C)`` under ``policy``."""
    n, classes = probabilities.shape
    labels = probabilities.argmax(dim=1)
    label = {"name": "label", "datatype": "INT64", "shape": [n], "data": labels.tolist()}
    if policy == "label":
        return [label]
    step = postprocessor(policy, rules)
    shown = probabilities if step is None else step.transform(probabilities)
    if policy == "rounded":
        values = [round(float(v), rules.decimals) for v in shown.reshape(-1)]
    else:
        values = shown.reshape(-1).tolist()
    return [{"name": "probabilities", "datatype": "FP32", "shape": [n, classes], "data": values}, label]
