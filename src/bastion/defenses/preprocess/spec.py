"""Preprocessing pipelines as short spec strings: ``"bits:4,median:3"``, ``"jpeg:75"``, ``"noise:0.1"``.

A spec is comma-separated steps ``name[:value]`` applied left to right; the value sets the step's
main parameter (a step without a value takes its default). Random steps take the ``seed`` given to
:func:`parse_preprocess`.
"""

from __future__ import annotations

from bastion.core.errors import InputError
from bastion.defenses.preprocess.base import Preprocessor
from bastion.defenses.preprocess.blur import GaussianBlur
from bastion.defenses.preprocess.jpeg import JpegCompression
from bastion.defenses.preprocess.median import MedianFilter
from bastion.defenses.preprocess.noise import GaussianNoise
from bastion.defenses.preprocess.resize import RandomResizePad
from bastion.defenses.preprocess.squeeze import BitDepthReduction

#: Every preprocessing step a spec may name, by name.
PREPROCESSORS: dict[str, type[Preprocessor]] = {
    cls.name: cls
    for cls in (BitDepthReduction, MedianFilter, JpegCompression, GaussianBlur, GaussianNoise, RandomResizePad)
}


def valid_steps() -> str:
    """One line listing every step and its value, for error messages and help."""
    return "; ".join(cls.spec_help for cls in PREPROCESSORS.values())


def parse_preprocess(spec: str, *, seed: int = 0, option: str = "preprocessing spec") -> list[Preprocessor]:
    """Steps for ``spec``, e.g. ``"bits:4,median:3"`` -> ``[BitDepthReduction(4), MedianFilter(3)]``.

    Args:
        spec: comma-separated ``name[:value]`` steps, applied in order.
        seed: seed of the random steps (``noise``, ``resize``).
        option: how error messages name the spec (the CLI passes ``--preprocess``).

    Raises:
        InputError: an empty spec or step, an unknown name, or a bad value; the message lists the
            valid steps.
    """
    parts = [part.strip() for part in spec.split(",")]
    if not spec.strip() or not all(parts):
        raise InputError(f"{option} {spec!r} has an empty step; give comma-separated steps such as "
                         f"bits:4,median:3. Valid steps: {valid_steps()}")
    return [_step(part, seed, option) for part in parts]


def format_spec(steps: list[Preprocessor]) -> str:
    """The spec string of a pipeline (parses back to equal steps, random seeds aside)."""
    return ",".join(step.spec() for step in steps)


def _step(part: str, seed: int, option: str) -> Preprocessor:
    name, _, value = (text.strip() for text in part.partition(":"))
    cls = PREPROCESSORS.get(name.lower())
    if cls is None:
        raise InputError(f"{option}: unknown preprocessing step {name!r}; valid steps: {valid_steps()}")
    params: dict[str, object] = {"seed": seed} if cls.random else {}
    if value:
        params[cls.spec_param] = _convert(value, cls, option)
    try:
        return cls(**params)  # type: ignore[arg-type]
    except InputError as error:
        raise InputError(f"{option}: {error} (in {part!r}; expected {cls.spec_help})") from None


def _convert(value: str, cls: type[Preprocessor], option: str) -> int | float:
    try:
        return cls.spec_type(value)
    except ValueError:
        kind = "an integer" if cls.spec_type is int else "a number"
        raise InputError(f"{option}: {cls.name} needs {kind}, got {value!r}; expected {cls.spec_help}") from None
