"""Splitting a policy file into statements, to give errors a line."""

from __future__ import annotations

from goldenpath.policy._source import split_statements


def test_semicolons_in_strings_and_comments_do_not_split() -> None:
    text = (
        "// header; not a policy\n"
        '@id("a;b")\n'
        'permit (principal, action, resource) when { context.path like "*;\\";*" };\n'
        "\n"
        "   forbid (principal, action, resource); // trailing; comment\n"
        'permit (principal, action, resource) when { "multi\n'
        'line" == "x" };\n'
        "// the end\n"
    )
    statements = split_statements(text)
    assert [s.line for s in statements] == [2, 5, 6]
    assert '@id("a;b")' in statements[0].text
    assert statements[0].text.strip().endswith('"*;\\";*" };')
    assert statements[1].text.strip() == "forbid (principal, action, resource);"


def test_unterminated_last_statement_is_kept() -> None:
    statements = split_statements("permit (principal, action, resource);\n\npermit (principal, action, resource)")
    assert [s.line for s in statements] == [1, 3]
    assert statements[1].text.strip() == "permit (principal, action, resource)"


def test_only_comments() -> None:
    assert split_statements("// nothing\n\n  // here;\n") == []
