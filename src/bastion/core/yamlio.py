"""YAML for the files users write (policies, threat models, schemas, manifests): ``yaml.safe_load`` that refuses a
mapping with the same key twice.

PyYAML keeps the last of two equal keys without a word, so a file whose second ``attack_paths:`` (or ``min:``)
silently replaces the first reads as one thing and means another. The duplicate is a
``yaml.constructor.ConstructorError``, a ``yaml.YAMLError`` with the line and column of the second key, so code
that reports YAML errors reports it the same way.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError

_MERGE_TAG = "tag:yaml.org,2002:merge"


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


def load_yaml(text: str) -> Any:
    """``text`` parsed as ``yaml.safe_load`` does, but a mapping with a repeated key raises a ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_NoDuplicatesLoader)  # noqa: S506 - a SafeLoader subclass
