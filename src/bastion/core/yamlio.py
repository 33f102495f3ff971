"""YAML for the files users write (policies, threat models, schemas, manifests): ``yaml.safe_load`` that refuses a
mapping with the same key twice, and reads ``1e7`` as a number.

PyYAML keeps the last of two equal keys without a word, so a file whose second ``attack_paths:`` (or ``min:``)
silently replaces the first reads as one thing and means another. The duplicate is a
``yaml.constructor.ConstructorError``, a ``yaml.YAMLError`` with the line and column of the second key, so code
that reports YAML errors reports it the same way.

PyYAML follows YAML 1.1, whose floats need a dot and a signed exponent: ``share: 1e7``, ``alpha: 1e-3`` or
``1.5e3`` would be strings, which the schemas then refuse as "not a number" although the user wrote one. As in
YAML 1.2, every number with an exponent is a float here (quote it to keep a string).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError

_MERGE_TAG = "tag:yaml.org,2002:merge"
#: Numbers with an exponent, as YAML 1.2 writes them; YAML 1.1 needs a dot and a signed exponent (``1.5e+3``), so
#: ``1e7``, ``1.5e3`` and ``1e-3`` were strings.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$")


class _NoDuplicatesLoader(yaml.SafeLoader):
    """``SafeLoader`` refusing duplicate keys in a mapping (merge keys, ``<<``, still override as YAML says)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if duplicate:
                raise ConstructorError("while constructing a mapping", node.start_mark,
                                       f"found the key {key!r} twice; keep one", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_NoDuplicatesLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+.0123456789"))


def load_yaml(text: str) -> Any:
    """``text`` parsed as ``yaml.safe_load`` does, but a mapping with a repeated key raises a ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_NoDuplicatesLoader)  # noqa: S506 - a SafeLoader subclass
