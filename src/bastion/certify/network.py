"""A classifier as a flat chain of operations that IBP and CROWN know how to bound.

:func:`build_chain` reads a :class:`~bastion.models.torch_adapter.TorchClassifier` (its ``module``
and its ``normalise`` step) into a list of operations, each with an exact ``forward``, an interval
``interval`` (IBP) and, for linear operations, the transposed map ``backward`` (CROWN):

* :class:`Dense` (``nn.Linear``), :class:`Conv` (``nn.Conv2d``; ``nn.AvgPool2d`` becomes a depthwise
  Conv with weights ``1 / (kh * kw)``), :class:`ScaleShift` (the adapter's normalisation, kept only
  when it cannot be folded into the next layer), :class:`Reshape` (``nn.Flatten``);
* :class:`ReLU` and :class:`MaxPool` (``nn.MaxPool2d``), whose linear relaxations live in ``crown.py``.

Eval-mode ``BatchNorm1d/2d`` directly after a Linear or Conv2d is folded into its weights, and the
normalisation ``(x - mean) / std`` into the first Linear (or an unpadded first Conv2d). Folding is
exact and differentiable in the parameters, so the chain is rebuilt per batch during training.
``nn.Dropout`` and ``nn.Identity`` are dropped (they are the identity in eval mode).
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bastion.certify.ops import Chain, Conv, Dense, MaxPool, Op, ReLU, Reshape, ScaleShift
from bastion.core.errors import CapabilityError
from bastion.models.torch_adapter import TorchClassifier

SUPPORTED = "Linear, Conv2d, ReLU, Flatten, AvgPool2d, MaxPool2d, BatchNorm (after Linear/Conv2d)"


@dataclass(frozen=True)
class NamedLayer:
    """A layer of the model in execution order: 1-based ``position``, qualified ``name``, the module."""

    position: int
    name: str
    module: nn.Module


def build_chain(
    classifier: TorchClassifier,
    *,
    batch_stats: Mapping[nn.Module, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> Chain:
    """Read ``classifier`` into a :class:`Chain` (see the module docstring for what is supported).

    Args:
        classifier: a torch adapter; its ``module`` is an ``nn.Sequential`` (nested is fine) or a
            module whose ``forward`` is a plain chain that ``torch.fx`` can trace.
        batch_stats: per BatchNorm module, the ``(mean, biased var)`` to fold instead of its running
            statistics (certified training with batch statistics). Default: eval statistics.

    Raises:
        CapabilityError: an unsupported layer (named, with its position), a BatchNorm that does not
            directly follow a Linear/Conv2d, or a layer configuration the bounds cannot handle.
    """
    shape = tuple(classifier.input_shape)
    like = next(iter(classifier.module.parameters()), torch.zeros(())).new_zeros(())
    ops: list[Op] = []
    normalisation = _normalisation(classifier, like)
    if normalisation is not None:
        ops.append(_with_shapes(normalisation, shape, like))
    previous: NamedLayer | None = None
    for layer in collect_layers(classifier.module):
        op = _convert(layer, previous, ops, shape, like, batch_stats or {})
        if op is not None:
            ops.append(_with_shapes(op, shape, like))
            shape = op.out_shape
        previous = layer
    if shape != (classifier.num_classes,):
        raise CapabilityError(
            f"the layers end with per-sample shape {shape}; IBP/CROWN need (num_classes,) = "
            f"({classifier.num_classes},) logits from the last layer"
        )
    return Chain(_fold_normalisation(ops), tuple(classifier.input_shape))


def _with_shapes(op: Op, shape: tuple[int, ...], like: torch.Tensor) -> Op:
    """Record the op's input and output shapes (a forward pass on one zero sample)."""
    op.in_shape = shape
    with torch.no_grad():
        op.out_shape = tuple(op.forward(like.new_zeros(1, *shape)).shape[1:])
    return op


def _unsupported(layer: NamedLayer, reason: str | None = None) -> CapabilityError:
    module = layer.module
    kind = module.description if isinstance(module, FunctionLayer) else type(module).__name__
    what = f"layer {layer.position} ({kind}, named '{layer.name}')"
    if reason is None:
        return CapabilityError(f"{what} is not supported by IBP/CROWN; supported: {SUPPORTED}")
    return CapabilityError(f"{what}: {reason}")


def _convert(
    layer: NamedLayer,
    previous: NamedLayer | None,
    ops: list[Op],
    shape: tuple[int, ...],
    like: torch.Tensor,
    batch_stats: Mapping[nn.Module, tuple[torch.Tensor, torch.Tensor]],
) -> Op | None:
    """The op for one layer, ``None`` for an identity; a BatchNorm is folded into ``ops[-1]`` in place."""
    module = layer.module
    if isinstance(module, (nn.Dropout, nn.Identity)):
        return None
    if isinstance(module, nn.ReLU):
        return ReLU(layer.name)
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            raise _unsupported(layer, "only Flatten(start_dim=1, end_dim=-1) is supported")
        return Reshape(layer.name)
    if isinstance(module, nn.Linear):
        if len(shape) != 1:
            raise _unsupported(layer, f"Linear gets per-sample shape {shape}; put a Flatten before it")
        bias = module.bias if module.bias is not None else module.weight.new_zeros(module.out_features)
        return Dense(layer.name, weight=module.weight, bias=bias)
    if isinstance(module, nn.Conv2d):
        return _conv(layer, shape)
    if isinstance(module, nn.AvgPool2d):
        return _avg_pool(layer, shape, like)
    if isinstance(module, nn.MaxPool2d):
        return _max_pool(layer, shape)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        ops[-1] = _fold_batch_norm(layer, previous, ops[-1] if ops else None, batch_stats)
        return None
    raise _unsupported(layer)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = tuple(value)
    return int(first), int(second)


def _conv(layer: NamedLayer, shape: tuple[int, ...]) -> Conv:
    module = layer.module
    assert isinstance(module, nn.Conv2d)
    if len(shape) != 3:
        raise _unsupported(layer, f"Conv2d gets per-sample shape {shape}; expected (channels, height, width)")
    if module.padding_mode != "zeros":
        raise _unsupported(layer, f"padding_mode={module.padding_mode!r} is not supported; use 'zeros'")
    kernel, dilation = _pair(module.kernel_size), _pair(module.dilation)
    padding = module.padding
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
        if any(t % 2 for t in total):
            raise _unsupported(layer, "padding='same' with an even kernel pads unevenly; give explicit padding")
        padding = (total[0] // 2, total[1] // 2)
    bias = module.bias if module.bias is not None else module.weight.new_zeros(module.out_channels)
    return Conv(layer.name, weight=module.weight, bias=bias, stride=_pair(module.stride),
                padding=_pair(padding), dilation=dilation, groups=module.groups)


def _avg_pool(layer: NamedLayer, shape: tuple[int, ...], like: torch.Tensor) -> Conv:
    """Average pooling as a depthwise convolution with weights ``1 / (kh * kw)``."""
    module = layer.module
    assert isinstance(module, nn.AvgPool2d)
    kernel, padding = _pair(module.kernel_size), _pair(module.padding)
    stride = _pair(module.stride if module.stride is not None else module.kernel_size)
    if len(shape) != 3:
        raise _unsupported(layer, f"AvgPool2d gets per-sample shape {shape}; expected (channels, height, width)")
    if module.ceil_mode or module.divisor_override is not None:
        raise _unsupported(layer, "ceil_mode=True and divisor_override are not supported")
    if not module.count_include_pad and any(padding):
        raise _unsupported(layer, "count_include_pad=False with padding is not supported")
    channels = shape[0]
    weight = torch.full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1]), dtype=like.dtype, device=like.device)
    return Conv(layer.name, weight=weight, bias=weight.new_zeros(channels), stride=stride, padding=padding,
                groups=channels)


def _max_pool(layer: NamedLayer, shape: tuple[int, ...]) -> MaxPool:
    module = layer.module
    assert isinstance(module, nn.MaxPool2d)
    if len(shape) != 3:
        raise _unsupported(layer, f"MaxPool2d gets per-sample shape {shape}; expected (channels, height, width)")
    if module.ceil_mode or module.return_indices:
        raise _unsupported(layer, "ceil_mode=True and return_indices=True are not supported")
    stride = module.stride if module.stride is not None else module.kernel_size
    return MaxPool(layer.name, kernel=_pair(module.kernel_size), stride=_pair(stride),
                   padding=_pair(module.padding), dilation=_pair(module.dilation))


def _fold_batch_norm(
    layer: NamedLayer,
    previous: NamedLayer | None,
    last: Op | None,
    batch_stats: Mapping[nn.Module, tuple[torch.Tensor, torch.Tensor]],
) -> Op:
    """``last`` (the Linear/Conv2d just before) with the BatchNorm's affine map folded in."""
    module = layer.module
    assert isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d))
    expected = (nn.Linear, Dense) if isinstance(module, nn.BatchNorm1d) else (nn.Conv2d, Conv)
    if previous is None or not isinstance(previous.module, expected[0]) or not isinstance(last, expected[1]):
        after = "the input" if previous is None else type(previous.module).__name__
        raise _unsupported(
            layer, f"a BatchNorm must directly follow a {expected[0].__name__} to be folded, but it follows "
                   f"{after}; supported: {SUPPORTED}")
    if module in batch_stats:
        mean, var = batch_stats[module]
    elif module.running_mean is not None and module.running_var is not None:
        mean, var = module.running_mean, module.running_var
    else:
        raise _unsupported(layer, "BatchNorm without running statistics (track_running_stats=False) "
                                  "normalises by batch statistics, which bounds cannot fold")
    scale = torch.rsqrt(var + module.eps)
    if module.weight is not None:
        scale = scale * module.weight
    shift = -mean * scale
    if module.bias is not None:
        shift = shift + module.bias
    weight = last.weight * scale.reshape(-1, *([1] * (last.weight.ndim - 1)))
    folded = Dense(last.name, weight=weight, bias=last.bias * scale + shift) if isinstance(last, Dense) else \
        Conv(last.name, weight=weight, bias=last.bias * scale + shift, stride=last.stride,
             padding=last.padding, dilation=last.dilation, groups=last.groups)
    folded.in_shape, folded.out_shape = last.in_shape, last.out_shape
    return folded


def _normalisation(classifier: TorchClassifier, like: torch.Tensor) -> ScaleShift | None:
    """The adapter's ``normalise`` as ``x * scale + shift``; ``None`` when it is the identity."""
    shape = (1, *classifier.input_shape)
    shift = classifier.normalise(like.new_zeros(shape))
    scale = classifier.normalise(like.new_ones(shape)) - shift
    probe = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=like.dtype).to(like.device)
    if not torch.allclose(classifier.normalise(probe), probe * scale + shift, rtol=1e-4, atol=1e-5):
        raise CapabilityError("the classifier's normalise() is not an elementwise affine map; IBP/CROWN "
                              "support only (x - mean) / std")
    if bool((scale == 1).all()) and bool((shift == 0).all()):
        return None
    return ScaleShift("normalise", scale=scale[0].detach(), shift=shift[0].detach())


def _fold_normalisation(ops: list[Op]) -> list[Op]:
    """Fold a leading :class:`ScaleShift` into the first Dense (through a Flatten) or unpadded Conv."""
    if len(ops) < 2 or not isinstance(ops[0], ScaleShift):
        return ops
    first, rest = ops[0], ops[1:]
    flatten = isinstance(rest[0], Reshape)
    target = rest[1] if flatten and len(rest) > 1 else rest[0]
    if isinstance(target, Dense) and (flatten or len(first.in_shape) == 1):
        scale, shift = first.scale.flatten(), first.shift.flatten()
        folded: Op = Dense(target.name, weight=target.weight * scale, bias=target.bias + target.weight @ shift)
    elif isinstance(target, Conv) and not flatten and not any(target.padding) and target.groups == 1 \
            and _per_channel(first):
        scale, shift = first.scale[:, 0, 0], first.shift[:, 0, 0]
        bias = target.bias + (target.weight.sum(dim=(2, 3)) @ shift)
        folded = Conv(target.name, weight=target.weight * scale[:, None, None], bias=bias, stride=target.stride,
                      padding=target.padding, dilation=target.dilation)
    else:
        return ops
    folded.in_shape, folded.out_shape = target.in_shape, target.out_shape
    if flatten:
        return [rest[0], folded, *rest[2:]]
    return [folded, *rest[1:]]


def _per_channel(op: ScaleShift) -> bool:
    if op.scale.ndim != 3:
        return False
    return all(bool((t == t[:, :1, :1]).all()) for t in (op.scale, op.shift))


# --- reading the layers: nested nn.Sequential, or a forward that torch.fx traces into a chain -------------

_LEAVES = (nn.Linear, nn.Conv2d, nn.ReLU, nn.Flatten, nn.AvgPool2d, nn.MaxPool2d, nn.BatchNorm1d,
           nn.BatchNorm2d, nn.Dropout, nn.Identity)


class FunctionLayer(nn.Module):
    """A stand-in for a function call found by tracing (``F.relu``, ``torch.flatten``, ``torch.tanh``)."""

    def __init__(self, description: str) -> None:
        super().__init__()
        self.description = description


def collect_layers(module: nn.Module) -> list[NamedLayer]:
    """The model's layers in execution order, with 1-based positions and qualified names.

    ``nn.Sequential`` containers are entered; other modules with children are traced with
    ``torch.fx``; functional ReLU and Flatten calls become ``nn.ReLU`` / ``nn.Flatten``.
    """
    return [NamedLayer(i, name, layer) for i, (name, layer) in enumerate(_walk(module, ""), 1)]


def _walk(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            yield from _walk(child, f"{prefix}.{name}" if prefix else name)
    elif isinstance(module, _LEAVES) or type(module).__module__.startswith("torch.nn"):
        yield prefix or type(module).__name__, module
    else:
        yield from _traced(module, prefix)


def _traced(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    kind = type(module).__name__
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception as exc:  # tracing runs arbitrary user code; any failure means "not a plain chain"
        raise CapabilityError(
            f"cannot read the layers of {kind}: it is not an nn.Sequential and torch.fx could not trace its "
            f"forward ({type(exc).__name__}: {exc}); write the model as an nn.Sequential") from exc
    current = None
    for node in graph.nodes:
        if node.op == "placeholder":
            if current is not None:
                raise CapabilityError(f"{kind}.forward takes more than one input; IBP/CROWN need one tensor input")
            current = node
        elif node.op == "output":
            if node.args[0] is not current:
                raise CapabilityError(f"{kind}.forward does not return the last layer's output; "
                                      "IBP/CROWN support a plain chain of layers")
        elif not _is_shape_query(node):
            inputs = [n for n in node.all_input_nodes if not _is_shape_query(n)]
            if inputs != [current]:
                raise CapabilityError(
                    f"{kind}.forward is not a plain chain at '{node.name}' (it combines "
                    f"{', '.join(n.name for n in inputs) or 'no tensors'}); IBP/CROWN support chains of "
                    "layers without skip connections")
            name = f"{prefix}.{node.target}" if prefix else str(node.target)
            if node.op == "call_module":
                yield from _walk(module.get_submodule(str(node.target)), name)
            else:
                yield node.name, _function_layer(node, current)
            current = node


def _is_shape_query(node: torch.fx.Node) -> bool:
    """``x.size(...)``, ``x.shape`` or an item of one: used only to compute a reshape's arguments."""
    if node.op == "call_method" and node.target == "size":
        return True
    if node.op == "call_function" and node.target is getattr and node.args[1:] == ("shape",):
        return True
    if node.op == "call_function" and node.target is operator.getitem:
        source = node.args[0]
        return isinstance(source, torch.fx.Node) and _is_shape_query(source)
    return False


def _function_layer(node: torch.fx.Node, current: torch.fx.Node) -> nn.Module:
    """``nn.ReLU`` / ``nn.Flatten`` for the functional forms of those, a :class:`FunctionLayer` otherwise."""
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    args = node.args[1:]
    if name in ("relu", "relu_"):
        return nn.ReLU()
    if name == "flatten" and (args in ((1,), (1, -1)) or (not args and node.kwargs.get("start_dim") == 1)):
        return nn.Flatten()
    if name in ("view", "reshape"):
        shape = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
        if len(shape) == 2 and isinstance(shape[0], torch.fx.Node) and _is_shape_query(shape[0]) and shape[1] == -1:
            return nn.Flatten()
    return FunctionLayer(f"{'x.' if node.op == 'call_method' else ''}{name}()")
