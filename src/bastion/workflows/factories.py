"""Model factories for the networks bastion trains itself: LiRA's shadows and the extraction copies.

A factory is ``() -> nn.Module``, named on the command line as ``pkg.module:factory`` (the form
``--model`` accepts). Shadows and copies must be trainable torch networks, so a factory that returns a
ready :class:`~bastion.models.base.Classifier` (or anything but an ``nn.Module``) is refused, and every
factory is checked once, by a forward pass on zeros, against the target's input shape and classes.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

import torch
from torch import nn

from bastion.core.errors import InputError
from bastion.models.base import Classifier
from bastion.models.loading import LoadedModel, is_factory_spec

#: Builds a fresh, untrained network mapping ``(N, *input_shape)`` to ``(N, C)`` logits.
ModelFactory = Callable[[], nn.Module]

__all__ = ["ModelFactory", "is_factory_spec", "torch_factory_spec"]


def torch_factory_spec(spec: str | None, loaded: LoadedModel) -> str | None:
    """``spec`` when the model was built by it as a torch network (so that bastion can train more), else ``None``."""
    return spec if is_factory_spec(spec) and loaded.kind == "torch" else None


def factory_from_spec(spec: str, *, option: str) -> ModelFactory:
    """The factory named ``pkg.module:factory``, wrapped to refuse anything but an ``nn.Module``.

    ``option`` names the command-line option in messages (``--shadow-model``, ``--copy-model``).

    Raises:
        InputError: a malformed spec, a module that cannot be imported or no callable of that name.
    """
    if not is_factory_spec(spec):
        raise InputError(f"{option} must be pkg.module:factory (a function returning a torch nn.Module), got {spec!r}")
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"cannot import {module_name!r} for {option} {spec}: {exc}. Run bastion from the folder "
                         "that holds it, or add that folder to PYTHONPATH") from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise InputError(f"{module_name} has no callable {attribute!r} (from {option} {spec})")

    @functools.wraps(factory)
    def build() -> nn.Module:
        try:
            built = factory()
        except Exception as exc:  # the user's code: any failure is a bad spec
            raise InputError(f"{spec}() raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(built, nn.Module):
            raise InputError(f"{option} {spec} returned {type(built).__name__}; bastion trains its own copies of "
                             "the network, so the factory must return a torch nn.Module")
        return built

    return build


def check_factory(factory: ModelFactory, model: Classifier, name: str) -> None:
    """Build one network and check that it maps the model's inputs ``(1, *input_shape)`` to ``(1, C)`` logits.

    Raises:
        InputError: the network fails on such an input or returns another shape.
    """
    with torch.random.fork_rng(devices=[]):
        network = factory()
    network.eval()
    try:
        with torch.no_grad():
            out = network(torch.zeros(1, *model.input_shape))
    except Exception as exc:  # the user's network: any failure means it does not fit
        raise InputError(f"{name} fails on the model's inputs of shape {tuple(model.input_shape)}: {exc}") from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, model.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"{name} maps an input of shape {(1, *model.input_shape)} to {shape}; the model has "
                         f"{model.num_classes} classes, so it must give (1, {model.num_classes})")


def default_copy_model(model: Classifier) -> tuple[str, ModelFactory]:
    """A zoo network for the model's inputs: its description and factory.

    ``(1, 8, 8)`` with 10 classes: ``digits_cnn``; ``(1, 28, 28)`` with 10 classes: ``fashion_small_cnn``;
    flat ``(D,)`` inputs: ``tabular_mlp(D, C)``.

    Raises:
        InputError: no zoo network fits; the message asks for ``--copy-model``.
    """
    from bastion.models import zoo

    shape, classes = tuple(model.input_shape), int(model.num_classes)
    if shape == (1, 8, 8) and classes == 10:
        return "bastion.models.zoo:digits_cnn", zoo.digits_cnn
    if shape == (1, 28, 28) and classes == 10:
        return "bastion.models.zoo:fashion_small_cnn", zoo.fashion_small_cnn
    if len(shape) == 1:
        return (f"bastion.models.zoo:tabular_mlp({shape[0]}, {classes})",
                functools.partial(zoo.tabular_mlp, shape[0], classes))
    raise InputError(f"no built-in copy architecture fits inputs of shape {shape} with {classes} classes; pass "
                     "--copy-model pkg.module:factory (a function returning an untrained torch nn.Module)")
