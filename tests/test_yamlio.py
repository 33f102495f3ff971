"""The YAML users write: a key given twice is refused, and a number with an exponent is a number."""

from __future__ import annotations

import pytest
import yaml

from bastion.core.yamlio import load_yaml


@pytest.mark.parametrize(("text", "value"), [
    ("1e7", 1e7), ("-2E+5", -2e5), ("1e-3", 0.001), ("1.5e3", 1500.0), (".5e2", 50.0), ("3.e2", 300.0),
    ("+4e0", 4.0), ("1.5e+3", 1500.0), ("1.0", 1.0), ("10", 10), ("0x1F", 31),
])
def test_numbers_with_an_exponent_are_floats_as_in_yaml_1_2(text, value):
    loaded = load_yaml(f"share: {text}")["share"]
    assert loaded == value and type(loaded) is type(value)


@pytest.mark.parametrize("text", ["'1e7'", '"1e-3"', "1e", "e7", "1.2.3e4", "1e7x", "v1e7"])
def test_what_is_not_such_a_number_stays_a_string(text):
    assert isinstance(load_yaml(f"version: {text}")["version"], str)


def test_the_library_loader_is_left_as_it_was():
    assert yaml.safe_load("share: 1e7") == {"share": "1e7"}  # only bastion's loader reads YAML 1.2 exponents


def test_a_key_given_twice_is_refused_with_its_line():
    with pytest.raises(yaml.YAMLError, match="found the key 'a' twice; keep one") as error:
        load_yaml("a: 1\nb: 2\na: 3\n")
    assert "line 3" in str(error.value)
