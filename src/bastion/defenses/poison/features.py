"""Penultimate-layer features: what the poison detectors look at.

Backdoored inputs are classified as the target through a different path than the target's clean
inputs, and that difference is plainest in the representation the last linear layer reads (Tran et
al. 2018; Chen et al. 2018). :func:`penultimate_features` captures that input with a forward hook.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bastion.core.errors import InputError


def last_linear(module: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` registered in ``module`` (the classification head of a usual network)."""
    linears = [layer for layer in module.modules() if isinstance(layer, nn.Linear)]
    if not linears:
        raise InputError(
            f"the model ({type(module).__name__}) has no nn.Linear layer, so it has no penultimate features; "
            "compute features (N, D) another way and pass them to the detector"
        )
    return linears[-1]


def penultimate_features(classifier: object, x: np.ndarray | torch.Tensor, *, batch_size: int = 256) -> np.ndarray:
    """The inputs of the classifier's last ``nn.Linear`` layer, flattened, for every sample.

    Args:
        classifier: a torch adapter (:class:`~bastion.models.torch_adapter.TorchClassifier`: it needs
            ``.module``, ``.logits`` and ``.input_shape``); its normalisation applies as usual.
        x: ``(N, *input_shape)`` inputs in the classifier's bounds, NumPy or torch.
        batch_size: samples per forward pass, default 256.

    Returns:
        ``(N, D)`` float32 features, ``D`` the last linear layer's ``in_features``.

    Raises:
        InputError: no torch module, a wrong sample shape, or no ``nn.Linear`` layer in the model.
    """
    module = getattr(classifier, "module", None)
    if not isinstance(module, nn.Module):
        raise InputError("penultimate features need a torch model (a TorchClassifier with .module); "
                         f"got {type(classifier).__name__}")
    inputs = torch.as_tensor(x.detach().cpu() if isinstance(x, torch.Tensor) else np.asarray(x))
    expected = tuple(getattr(classifier, "input_shape", inputs.shape[1:]))
    if inputs.ndim < 1 or tuple(inputs.shape[1:]) != expected:
        raise InputError(f"x must have shape (N, {', '.join(map(str, expected))}), got {tuple(inputs.shape)}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    head = last_linear(module)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach().flatten(1).cpu()))
    try:
        with torch.no_grad():
            device = next(iter(module.parameters()), torch.empty(0)).device
            for start in range(0, len(inputs), batch_size):
                batch = inputs[start : start + batch_size].to(device=device, dtype=torch.float32)
                classifier.logits(batch)  # type: ignore[attr-defined]
    finally:
        hook.remove()
    if len(inputs) and len(captured) != -(-len(inputs) // batch_size):
        raise InputError("the model's last nn.Linear layer was not called exactly once per forward pass; "
                         "compute features (N, D) another way and pass them to the detector")
    if not captured:
        return np.zeros((0, head.in_features), dtype=np.float32)
    return torch.cat(captured).numpy().astype(np.float32, copy=False)
