"""Output comparison rules (outside the sandbox)."""
from megatron_ssd.evaluation.sandbox.compare import json_value_matches, stdout_matches


def test_stdout_whitespace_normalised():
    assert stdout_matches("1 2\r\n3  \n\n", "1 2\n3")
    assert stdout_matches("  1   2\n3\n", "1 2\n3\n")
    assert not stdout_matches("1 2 3\n", "1 2\n3\n")  # line structure matters
    assert not stdout_matches("12\n", "1 2\n")


def test_stdout_numeric_tokens_compare_as_decimals():
    assert stdout_matches("1.0 2.50\n", "1 2.5\n")
    assert not stdout_matches("0.333\n", "0.3333\n")
    assert not stdout_matches("YES\n", "yes\n")


def test_json_values():
    assert json_value_matches("[0, 1]", "[0,1]")
    assert json_value_matches("2.0", "2")
    assert not json_value_matches("true", "1")
    assert not json_value_matches("1", "true")
    assert json_value_matches('{"a": [1, 2]}', '{"a":[1,2]}')
    assert not json_value_matches("[1, 2]", "[2, 1]")
    assert not json_value_matches("not json", "[1]")
    assert json_value_matches("abc", " abc ")  # expected is not JSON: compare stripped text
