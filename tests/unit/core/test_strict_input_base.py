"""The strict input base (core/serializers.py) and the depth-bounded JSON parser."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from rest_framework import serializers
from rest_framework.exceptions import ParseError

from core.parsers import MAX_DEPTH, StrictJSONParser, nesting_exceeds
from core.serializers import NoInputSerializer, StrictInputSerializer


class Example(StrictInputSerializer):
    title = serializers.CharField(required=False)
    unread = serializers.BooleanField(required=False)
    note = serializers.CharField(required=False, allow_null=True)
    version = serializers.IntegerField(read_only=True)


def errors(serializer_class: type[serializers.Serializer], data: Any) -> dict:
    serializer = serializer_class(data=data)
    assert not serializer.is_valid()
    return dict(serializer.errors)


def test_it_accepts_declared_fields_of_their_json_type():
    serializer = Example(data={"title": "t", "unread": False, "note": None})
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data == {"title": "t", "unread": False, "note": None}


@pytest.mark.parametrize(
    ("body", "named"),
    [(None, "null"), ([], "an array"), ("x", "a string"), (3, "a number"), (True, "a boolean")],
)
def test_it_refuses_a_body_that_is_not_an_object(body, named):
    assert errors(Example, body) == {"non_field_errors": [f"expected a JSON object, got {named}"]}


def test_it_names_every_unknown_and_read_only_field():
    assert errors(Example, {"title": "t", "version": 3, "bogus": 1}) == {
        "bogus": ["this field is read-only or unknown"],
        "version": ["this field is read-only or unknown"],
    }


@pytest.mark.parametrize("value", [12, 1.5, True, ["a"], {"a": "b"}])
def test_a_string_field_takes_only_strings(value):
    assert errors(Example, {"title": value}) == {"title": ["Not a valid string."]}


@pytest.mark.parametrize("value", ["true", "yes", 1, 0, None])
def test_a_boolean_field_takes_only_booleans(value):
    assert list(errors(Example, {"unread": value})) == ["unread"]


def test_no_input_takes_only_an_empty_object():
    assert NoInputSerializer(data={}).is_valid()
    assert list(errors(NoInputSerializer, {"force": True})) == ["force"]
    assert list(errors(NoInputSerializer, None)) == ["non_field_errors"]


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    ("data", "depth"),
    [("scalar", 0), ({}, 1), ([1, {"a": [2]}], 3), (nested(MAX_DEPTH), MAX_DEPTH)],
)
def test_nesting_is_measured_at_every_depth(data, depth):
    assert not nesting_exceeds(data, depth)
    assert nesting_exceeds(data, depth - 1) == (depth > 0)


def test_nesting_far_past_the_recursion_limit_is_measured_without_recursion():
    assert nesting_exceeds(nested(100_000), MAX_DEPTH)


def parse(text: str) -> Any:
    return StrictJSONParser().parse(io.BytesIO(text.encode()), "application/json", {})


def test_the_parser_accepts_json_up_to_the_bound():
    document = json.dumps(nested(MAX_DEPTH))
    assert parse(document) == nested(MAX_DEPTH)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1_000, 100_000])
def test_the_parser_refuses_deeper_json_as_a_parse_error(depth):
    with pytest.raises(ParseError, match="nested deeper than"):
        parse("[" * depth + "]" * depth)


def test_the_parser_still_refuses_malformed_json_and_nan():
    for text in ['{"a": ', "NaN"]:
        with pytest.raises(ParseError):
            parse(text)
