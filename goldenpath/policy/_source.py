"""Where each policy starts in a ``.cedar`` file.

cedarpy's parse and validation errors carry no source position, so we split the text into
statements ourselves (``;`` outside string literals and ``//`` comments ends a policy) to name the
line of the policy an error is about.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Statement:
    line: int  # 1-based line of the statement's first token
    text: str  # the statement, with its terminating ";" when it has one


def split_statements(text: str) -> list[Statement]:
    """The statements of a Cedar policy file, in order; comments and blank space alone are not one."""
    out: list[Statement] = []
    start = 0  # offset where the current statement's text begins
    first: int | None = None  # offset of its first token
    line = 1
    first_line = 1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif not c.isspace():
            if first is None:
                first, first_line = i, line
            if c == '"':
                i += 1
                while i < n and text[i] != '"':
                    step = 2 if text[i] == "\\" else 1
                    line += text.count("\n", i, i + step)
                    i += step
            elif c == ";":
                out.append(Statement(first_line, text[start : i + 1]))
                start, first = i + 1, None
        i += 1
    if first is not None:
        out.append(Statement(first_line, text[start:]))
    return out
