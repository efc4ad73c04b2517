"""The single exception type of the expression package.

Campaign reports a bad expression as a chain of lines, innermost cause first and the
`XTK-170036 Unable to parse expression '<expr>'.` wrapper last (data-model.md §7).
"""

from __future__ import annotations

PARSE_ERROR_CODE = "XTK-170036"

# The echoed expression ends up in SOAP faults and logs: keep it bounded.
_MAX_ECHO = 200


def _printable(text: str) -> str:
    """Escape control characters so the echo is safe inside XML and log lines."""
    out = []
    for ch in text:
        code = ord(ch)
        if code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def echo_expression(text: str) -> str:
    """The expression as shown in messages: control characters escaped, long text cut."""
    if len(text) > _MAX_ECHO:
        text = text[:_MAX_ECHO] + "..."
    return _printable(text)


class ExpressionError(ValueError):
    """An XTK expression could not be parsed or translated.

    `detail` says what went wrong (and where, when known); `offset` is the 0-based character
    offset in `expression`; `str(err)` is the Campaign-style two-line message.
    """

    code = PARSE_ERROR_CODE

    def __init__(self, detail: str, expression: str | None = None, offset: int | None = None) -> None:
        self.detail = detail
        self.expression = expression
        self.offset = offset
        super().__init__(self.message)

    @property
    def lines(self) -> list[str]:
        """Message chain, innermost first (the order of a SOAP fault `detail`)."""
        shown = self.expression if self.expression is not None else ""
        return [_printable(self.detail), f"{self.code} Unable to parse expression '{echo_expression(shown)}'."]

    @property
    def message(self) -> str:
        return "\n".join(self.lines)

    def with_expression(self, expression: str) -> ExpressionError:
        """A copy attached to the full expression text (used when a sub-part failed)."""
        return ExpressionError(self.detail, expression, self.offset)

    def __str__(self) -> str:
        return self.message
