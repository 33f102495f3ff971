"""The policy applied to one request: validate the tensor, sanitise it, run the model once, score it
with the detectors, and decide. Deterministic: the same model, policy, reference data and input give
the same probabilities, scores and decision bit for bit (``bastion replay`` relies on it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bastion.core.errors import ConfigError, InputError
from bastion.defenses.detectors import InputDetector, build_detector
from bastion.defenses.preprocess import BitDepthReduction
from bastion.gateway.errors import invalid_input
from bastion.gateway.policy import Decision, Policy
from bastion.models.base import Classifier
from bastion.models.torch_adapter import TorchClassifier

NUMPY_DTYPES = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}


@dataclass(frozen=True)
class Scored:
    """The model's probabilities ``(N, C)`` and each detector's scores and flags ``(N,)`` for ``N`` rows."""

    probabilities: torch.Tensor
    scores: dict[str, torch.Tensor]
    flagged: dict[str, torch.Tensor]


@dataclass(frozen=True)
class Evaluation:
    """What the policy made of one request of ``N`` instances.

    Attributes:
        probabilities: ``(N, C)`` float32 softmax of the model's logits on the sanitised input.
        scores: detector name -> ``N`` scores (higher is more suspicious).
        flagged: detector name -> ``N`` booleans (score above the detector's threshold).
        decision: ``answer``, ``flag``, ``review`` or ``refuse`` (the worst instance decides).
        reasons: why, in words (empty for a plain answer).
    """

    probabilities: torch.Tensor
    scores: dict[str, list[float]]
    flagged: dict[str, list[bool]]
    decision: Decision
    reasons: list[str] = field(default_factory=list)

    @property
    def confidence(self) -> torch.Tensor:
        """``(N,)`` largest probability per instance."""
        return self.probabilities.max(dim=1).values

    @property
    def any_flagged(self) -> np.ndarray:
        """``(N,)`` whether any detector flagged each instance (the extraction monitor's OOD signal)."""
        if not self.flagged:
            return np.zeros(self.probabilities.shape[0], dtype=bool)
        return np.array(list(self.flagged.values()), dtype=bool).any(axis=0)


class PolicyPipeline:
    """A served model under a policy, detectors fitted.

    Args:
        model: the classifier (its ``input_shape`` and ``bounds`` are the defaults of the input rules).
        policy: the policy.
        reference: ``(R, *input_shape)`` inputs the detectors are fitted on; required when the policy
            has detectors.
    """

    def __init__(self, model: Classifier, policy: Policy, *, reference: torch.Tensor | None = None) -> None:
        self.model = in_layout(model, policy.memory_format)
        self.policy = policy
        rules = policy.input
        self.input_shape = tuple(rules.shape) if rules.shape is not None else tuple(model.input_shape)
        if self.input_shape != tuple(model.input_shape):
            raise ConfigError(f"the policy's input shape {list(self.input_shape)} is not the model's "
                              f"{list(model.input_shape)}")
        self.low, self.high = rules.range if rules.range is not None else tuple(model.bounds)
        self.dtype = rules.dtype
        bits = policy.sanitise.bit_depth
        self._squeezer = None if bits is None else BitDepthReduction(bits).fit(bounds=(self.low, self.high))
        self.detectors = self._fit_detectors(reference)

    def _fit_detectors(self, reference: torch.Tensor | None) -> list[InputDetector]:
        if not self.policy.detectors:
            return []
        if reference is None:
            raise ConfigError("the policy has detectors but no reference data was given to fit them on")
        reference = self.sanitise(reference.float())
        detectors = []
        for rule in self.policy.detectors:
            detector = build_detector(rule.kind, **rule.params)
            with torch.no_grad():
                detectors.append(detector.fit(self.model, reference, false_positive_rate=rule.false_positive_rate))
        return detectors

    # --- one request -------------------------------------------------------------------------------------

    def tensor(self, shape: Any, datatype: Any, data: Any) -> torch.Tensor:
        """The request's tensor, checked against the input rules.

        Args:
            shape: ``[N, *input_shape]`` as sent.
            datatype: ``FP32`` etc. as sent.
            data: the values, flat in row-major order (nested lists are accepted too).

        Raises:
            GatewayError: 422 with what is wrong (shape, datatype, count, non-finite or out-of-range values).
        """
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise invalid_input(f"shape must be a list of integers, got {shape!r}")
        expected = list(self.input_shape)
        if len(shape) != len(expected) + 1 or shape[1:] != expected:
            raise invalid_input(f"shape {shape} does not fit this model: send [N, {', '.join(map(str, expected))}]")
        count = shape[0]
        if not 1 <= count <= self.policy.input.max_instances:
            raise invalid_input(f"{count} instances in one request; send 1 to {self.policy.input.max_instances}")
        if datatype != self.dtype:
            raise invalid_input(f"datatype {datatype!r} is not accepted; send {self.dtype}")
        try:
            array = np.asarray(data, dtype=NUMPY_DTYPES[self.dtype])
        except (TypeError, ValueError, OverflowError):
            raise invalid_input("data must be a list of numbers") from None
        if array.size != math.prod(shape):
            raise invalid_input(f"data holds {array.size} values but shape {shape} needs {math.prod(shape)}")
        if not np.isfinite(array).all():
            raise invalid_input("data holds NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < self.low or high > self.high:
            raise invalid_input(f"values must lie in [{self.low}, {self.high}]; these span [{low}, {high}]")
        return torch.from_numpy(array.reshape(shape).astype(np.float32, copy=False))

    def sanitise(self, x: torch.Tensor) -> torch.Tensor:
        """Feature squeezing (bit-depth reduction within the input range) when the policy asks for it."""
        return x if self._squeezer is None else self._squeezer.transform(x)

    def evaluate(self, x: torch.Tensor) -> Evaluation:
        """Run the model and the detectors on ``x`` ``(N, *input_shape)`` float32 and decide."""
        return self._evaluation(self.score(x), 0, x.shape[0])

    def evaluate_batch(self, inputs: Sequence[torch.Tensor]) -> list[Evaluation]:
        """Evaluate several requests in one forward pass: ``inputs`` are their ``(N_i, *input_shape)`` tensors,
        concatenated in order; each request is decided on its own rows. One request is :meth:`evaluate`.

        The probabilities of a row may differ in the last bits from those of the same input evaluated
        alone (the kernels block a batch differently); the same batch always gives the same bits, so
        ``bastion replay`` re-runs the whole batch a request was answered in.
        """
        if len(inputs) == 1:
            return [self.evaluate(inputs[0])]
        scored = self.score(torch.cat(list(inputs)))
        evaluations, start = [], 0
        for x in inputs:
            evaluations.append(self._evaluation(scored, start, start + x.shape[0]))
            start += x.shape[0]
        return evaluations

    def score(self, x: torch.Tensor) -> Scored:
        """Sanitise ``x`` ``(N, *input_shape)``, run the model once and score every row with the detectors."""
        x = self.sanitise(x)
        with torch.no_grad():
            logits = self.model.logits(x)
            probabilities = torch.softmax(logits.float(), dim=1)
            scores, flagged = {}, {}
            for detector in self.detectors:  # the tensor was validated by `tensor`; the logits are the model's
                values = detector.score_checked(self.model, x, logits=logits)
                scores[detector.name] = values
                flagged[detector.name] = values > detector.threshold_
        return Scored(probabilities=probabilities, scores=scores, flagged=flagged)

    def _evaluation(self, scored: Scored, start: int, stop: int) -> Evaluation:
        probabilities = scored.probabilities[start:stop]
        scores = {name: values[start:stop].tolist() for name, values in scored.scores.items()}
        flagged = {name: values[start:stop].tolist() for name, values in scored.flagged.items()}
        decision, reasons = self._decide(probabilities, flagged)
        return Evaluation(probabilities=probabilities, scores=scores, flagged=flagged, decision=decision,
                          reasons=reasons)

    def _decide(self, probabilities: torch.Tensor, flagged: dict[str, list[bool]]) -> tuple[Decision, list[str]]:
        rules = self.policy.decision
        n = probabilities.shape[0]
        counts = [sum(flags[i] for flags in flagged.values()) for i in range(n)]
        worst = max(counts, default=0)
        reasons = [f"instance {i}: flagged by {', '.join(k for k, f in flagged.items() if f[i])}"
                   for i in range(n) if counts[i]]
        decision: Decision = "answer"
        if worst >= rules.flag_at:
            decision = "flag"
        if rules.review_at is not None and worst >= rules.review_at:
            decision = "review"
        if rules.review_below_confidence is not None:
            low = (probabilities.max(dim=1).values < rules.review_below_confidence).nonzero().flatten().tolist()
            if low and decision in ("answer", "flag"):
                decision = "review"
            reasons += [f"instance {i}: confidence below {rules.review_below_confidence}" for i in low]
        if rules.refuse_at is not None and worst >= rules.refuse_at:
            decision = "refuse"
        return decision, reasons

    def fitted_state(self) -> dict[str, Any]:
        """Each detector's parameters and threshold, for the metadata route and the audit trail."""
        return {d.name: {"params": d.get_params(), "threshold": float(d.threshold_)} for d in self.detectors}


def in_layout(model: Classifier, memory_format: str) -> Classifier:
    """``model`` as the policy's ``memory_format`` runs it (a channels-last copy of a torch model, or itself).

    Raises:
        ConfigError: channels-last layout for a model that is not a torch model on image inputs, or whose forward
            pass does not run in that layout (e.g. ``.view`` on convolution features), tried on one zero image.
    """
    if memory_format == "contiguous":
        return model
    if not isinstance(model, TorchClassifier):
        raise ConfigError(f"memory_format: {memory_format} is for torch models on image inputs (C, H, W); this model "
                          f"is {type(model).__name__}: remove it from the policy")
    try:
        twin = model.in_channels_last()
        with torch.no_grad():
            twin.logits(torch.zeros(1, *model.input_shape, device=twin.device))
    except InputError as error:
        raise ConfigError(f"memory_format: {memory_format}: {error}; remove it from the policy") from None
    except RuntimeError as error:
        raise ConfigError(f"this model's forward pass does not run in channels-last layout ({error}); it may call "
                          "`.view` on convolution features, where `flatten` or `reshape` would do: remove "
                          f"memory_format: {memory_format} from the policy, or change the model") from None
    return twin
