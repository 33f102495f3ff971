"""Small reference networks, usable as ``--model bastion.models.zoo:digits_cnn``.

Each factory returns an ``nn.Module`` with ``input_shape`` and ``num_classes`` attributes, which is
what the model loader needs besides the weights.
"""

from __future__ import annotations

from torch import nn


def _tagged(module: nn.Module, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    module.input_shape = input_shape  # type: ignore[attr-defined]
    module.num_classes = num_classes  # type: ignore[attr-defined]
    return module


def digits_cnn() -> nn.Module:
    """A CNN for scikit-learn's 8x8 digits: input ``(N, 1, 8, 8)`` in [0, 1], 10 logits."""
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )
    return _tagged(net, (1, 8, 8), 10)


def fashion_cnn() -> nn.Module:
    """A CNN for 28x28 grey images (Fashion-MNIST): input ``(N, 1, 28, 28)`` in [0, 1], 10 logits."""
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )
    return _tagged(net, (1, 28, 28), 10)


def tabular_mlp(num_features: int, num_classes: int, hidden: int = 64) -> nn.Module:
    """A two-layer MLP for ``(N, num_features)`` tabular inputs."""
    net = nn.Sequential(
        nn.Linear(num_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )
    return _tagged(net, (num_features,), num_classes)


def fashion_strided_cnn() -> nn.Module:
    """A fast CNN for 28x28 grey images: two stride-2 convolutions instead of pooling, then two linear layers.

    Input ``(N, 1, 28, 28)`` in [0, 1], 10 logits. About half the cost of :func:`fashion_cnn` per
    pass on a CPU, which is what adversarial training multiplies; the hardening benchmark uses it.
    """
    return _strided_cnn(32, 256)


def fashion_wide_cnn() -> nn.Module:
    """:func:`fashion_strided_cnn` at twice the width (64 and 128 channels, a 512-unit hidden layer).

    Input ``(N, 1, 28, 28)`` in [0, 1], 10 logits. Adversarial training needs capacity: this is the
    model the hardening benchmark trains to its clean and robust targets (about twice the cost per pass).
    """
    return _strided_cnn(64, 512)


def fashion_deep_cnn() -> nn.Module:
    """:func:`fashion_wide_cnn` with a third convolution (128 channels, 3x3, stride 1) on its 7x7 features.

    Input ``(N, 1, 28, 28)`` in [0, 1], 10 logits. About 1.5 times the wide CNN's cost per training step: more
    capacity for adversarial training, where the wide CNN's clean/robust trade-off stops just short of the
    hardening targets.
    """
    return _strided_cnn(64, 512, third_conv=True)


def _strided_cnn(width: int, hidden: int, *, third_conv: bool = False) -> nn.Module:
    """Convolutions of ``width`` and ``2 * width`` channels (4x4, stride 2), optionally a third of ``2 * width``
    (3x3, stride 1), then a ``hidden``-unit layer and 10 logits; 28x28 grey input."""
    layers: list[nn.Module] = [nn.Conv2d(1, width, 4, stride=2, padding=1), nn.ReLU(),
                               nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.ReLU()]
    if third_conv:
        layers += [nn.Conv2d(2 * width, 2 * width, 3, stride=1, padding=1), nn.ReLU()]
    layers += [nn.Flatten(), nn.Linear(2 * width * 7 * 7, hidden), nn.ReLU(), nn.Linear(hidden, 10)]
    return _tagged(nn.Sequential(*layers), (1, 28, 28), 10)


def fashion_small_cnn() -> nn.Module:
    """A small CNN for certified training on 28x28 grey images (IBP, CROWN-IBP): input ``(N, 1, 28, 28)``.

    Two stride-2 convolutions (16 and 32 channels) and a 100-unit hidden layer: small networks keep
    interval bounds tight, and each training step costs a few forward passes.
    """
    net = nn.Sequential(
        nn.Conv2d(1, 16, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )
    return _tagged(net, (1, 28, 28), 10)
