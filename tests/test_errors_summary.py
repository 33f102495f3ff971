"""The one-line summary of a pydantic validation error that bastion's file readers show."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError, field_validator

from bastion.core.errors import validation_problems


class _Document(BaseModel):
    name: str
    size: int
    parts: list[int]

    @field_validator("size")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be positive")
        return value


def _error(data: object) -> ValidationError:
    try:
        _Document.model_validate(data)
    except ValidationError as error:
        return error
    raise AssertionError("no error")


def test_problems_are_named_by_their_field_path_on_one_line():
    summary = validation_problems(_error({"name": "a", "size": -1, "parts": [1, "x"]}))
    assert summary == "size: must be positive; parts.1: Input should be a valid integer, unable to parse string as " \
                      "an integer"


def test_only_the_first_problems_are_listed_then_how_many_more():
    summary = validation_problems(_error({"parts": ["a", "b", "c", "d"]}), limit=2)
    assert summary == "name: Field required; size: Field required; and 4 more"


def test_a_problem_of_the_whole_document_is_named_by_whole():
    assert validation_problems(_error([1, 2]), whole="the policy").startswith("the policy: Input should be")


def test_locate_names_a_problem_in_the_users_words_without_repeating_them():
    def locate(location):
        return f"part #{location[1] + 1}" if location[:1] == ("parts",) else ".".join(map(str, location))

    summary = validation_problems(_error({"name": "a", "size": -1, "parts": [1, "x"]}), locate=locate)
    assert summary.startswith("size: must be positive; part #2: Input should be a valid integer")
