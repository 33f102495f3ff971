"""The policy applied to one request to a text model: validate the strings, screen each with the prompt guard,
run the model once, and decide. Deterministic like :class:`~bastion.gateway.pipeline.PolicyPipeline`: the same
model, policy, guard and strings give the same probabilities, scores and decision (``bastion replay`` relies
on it).

A request holds ``N`` strings as one Open Inference Protocol v2 ``BYTES`` tensor (``shape [N]``, ``data`` the
strings). An instance the guard flags leads to the policy's ``text.guard.action``: ``refuse`` (the request is
refused with the guard's reasons), ``review`` (human review) or ``flag`` (answered with the reasons); the
worst instance decides, and ``decision.review_below_confidence`` applies as for tensor models. The audit
log keeps the strings as the UTF-8 bytes of their canonical JSON list (:func:`text_array`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bastion.core.errors import ConfigError
from bastion.defenses.text.findings import Verdict
from bastion.defenses.text.guard import PromptGuard
from bastion.gateway.errors import invalid_input
from bastion.gateway.guard import ready
from bastion.gateway.pipeline import Evaluation
from bastion.gateway.policy import Decision, Policy
from bastion.models.text_adapter import TextClassifier
from bastion.storage.ledger import canonical_json

#: The detector name the guard's scores and flags are recorded under.
GUARD_NAME = "prompt-guard"


def check_text_policy(policy: Policy) -> None:
    """``ConfigError`` naming the sections of ``policy`` a text model cannot use (they act on tensors)."""
    tensor_only = [name for name, used in (("detectors", bool(policy.detectors)),
                                           ("reference", policy.reference is not None),
                                           ("sanitise.bit_depth", policy.sanitise.bit_depth is not None),
                                           ("input.shape", policy.input.shape is not None),
                                           ("input.range", policy.input.range is not None),
                                           ("memory_format", policy.memory_format != "contiguous")) if used]
    if tensor_only:
        raise ConfigError(f"the policy sets {', '.join(tensor_only)}, which act on tensors; a text model takes "
                          "strings: screen them with the `text:` section (text.guard) instead")


def text_array(texts: Sequence[str]) -> np.ndarray:
    """``(B,)`` uint8: the UTF-8 bytes of the canonical JSON list of ``texts`` (the audit log's input)."""
    return np.frombuffer(canonical_json(list(texts)).encode("utf-8"), dtype=np.uint8)


def texts_from_array(array: np.ndarray) -> list[str]:
    """The strings :func:`text_array` encoded."""
    return json.loads(array.astype(np.uint8).tobytes().decode("utf-8"))


class TextPipeline:
    """A text model under a policy.

    Args:
        model: the text classifier.
        policy: the policy; its ``text`` section (defaults when absent) sets the limit and the guard.

    Raises:
        ConfigError: the policy uses tensor-only sections (see :func:`check_text_policy`).
    """

    dtype = "BYTES"

    def __init__(self, model: TextClassifier, policy: Policy) -> None:
        check_text_policy(policy)
        self.model = model
        self.policy = policy
        self.rules = policy.text_rules
        guard = self.rules.guard
        self.guard = None if not guard.enabled else PromptGuard(
            classifier=None if guard.rules_only else "default", threshold=guard.threshold,
            long_threshold=guard.long_threshold,
            max_chars=self.rules.max_chars)

    def texts(self, shape: Any, datatype: Any, data: Any) -> list[str]:
        """The request's strings, checked against the policy.

        Args:
            shape: ``[N]`` as sent. datatype: must be ``BYTES``. data: ``N`` strings.

        Raises:
            GatewayError: 422 saying what is wrong (datatype, shape, count, a non-string, a string too long).
        """
        if datatype != self.dtype:
            raise invalid_input(f"datatype {datatype!r} is not accepted; this text model takes BYTES (a list of "
                                "strings)")
        if not isinstance(shape, list) or len(shape) != 1 or not isinstance(shape[0], int) \
                or isinstance(shape[0], bool):
            raise invalid_input(f"shape {shape!r} does not fit a text model: send [N] for N strings")
        most = self.policy.input.max_instances
        if not 1 <= shape[0] <= most:
            raise invalid_input(f"{shape[0]} instances in one request; send 1 to {most}")
        if not isinstance(data, list) or len(data) != shape[0] or not all(isinstance(t, str) for t in data):
            raise invalid_input(f"data must be a list of {shape[0]} strings, as the shape says")
        limit = self.rules.max_chars
        for index, text in enumerate(data):
            if len(text) > limit:
                raise invalid_input(f"instance {index} has {len(text):,} characters, over the policy's limit of "
                                    f"{limit:,} (text.max_chars)")
        return data

    def evaluate(self, texts: Sequence[str]) -> Evaluation:
        """Screen each of the ``N`` strings, run the model once on them all, and decide."""
        verdicts = [] if self.guard is None else [ready(self.guard).screen(text) for text in texts]
        probabilities = torch.from_numpy(self.model.predict_proba(texts).astype(np.float32))
        scores = {GUARD_NAME: [v.score for v in verdicts]} if verdicts else {}
        flagged = {GUARD_NAME: [v.flagged for v in verdicts]} if verdicts else {}
        decision, reasons = self._decide(probabilities, verdicts)
        return Evaluation(probabilities=probabilities, scores=scores, flagged=flagged, decision=decision,
                          reasons=reasons)

    def _decide(self, probabilities: torch.Tensor, verdicts: list[Verdict]) -> tuple[Decision, list[str]]:
        reasons = [_reason(index, verdict) for index, verdict in enumerate(verdicts) if verdict.flagged]
        decision: Decision = self.rules.guard.action if reasons else "answer"
        below = self.policy.decision.review_below_confidence
        if below is not None:
            low = (probabilities.max(dim=1).values < below).nonzero().flatten().tolist()
            if low and decision in ("answer", "flag"):
                decision = "review"
            reasons += [f"instance {i}: confidence below {below}" for i in low]
        return decision, reasons

    def fitted_state(self) -> dict[str, Any]:
        """The guard's parameters, for the metadata route."""
        return {} if self.guard is None else {GUARD_NAME: {"params": self.guard.get_params()}}


def _reason(index: int, verdict: Verdict) -> str:
    flagging = [finding for finding in verdict.findings if finding.layer != "normalize"] or verdict.findings
    first = flagging[0].reason if flagging else "flagged"
    return f"instance {index}: the prompt guard flagged it ({', '.join(verdict.categories)}): {first}"
