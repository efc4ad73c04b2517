"""Errors of the data API (queryDef, Write...) in Campaign's `AAA-NNNNNN text` form (data-model.md §7).

A `DataApiError` carries a headline (`code` + `message`, the fault string) and the chain of causes
below it, innermost first, which is what a SOAP fault `detail` lists before the headline.
Codes Campaign documents are reused; the others (marked *invented*) follow the same numbering and
are listed in docs/querydef.md.
"""

from __future__ import annotations

from collections.abc import Sequence

# Campaign's codes
PARSE_EXPRESSION = "XTK-170036"  # Unable to parse expression '...'.
UNKNOWN_SCHEMA = "XSV-350000"  # same code as schema.errors.UnknownSchemaError
POSTGRES_ERROR = "PGS-220000"
ODBC_ERROR = "ODB-240000"
# invented (not public): same families, unused numbers
INVALID_QUERY = "XTK-170030"  # malformed queryDef document
NO_RESULT = "XTK-170041"  # operation="get" found no row
FOREIGN_DATABASE = "XTK-170042"  # link to a table the query's database cannot see
SQL_NOT_ALLOWED = "XSV-350082"  # raw SQL without the allowSQLInjection privilege

_MAX_ECHO = 200


def echo(text: str) -> str:
    """User text as shown inside a message: bounded, control characters escaped."""
    shown = text if len(text) <= _MAX_ECHO else text[:_MAX_ECHO] + "..."
    return "".join(ch if ch >= " " and ch != "\x7f" else f"\\x{ord(ch):02x}" for ch in shown)


class DataApiError(Exception):
    """A refused or failed data-API call.

    `client` is True when the caller's input is at fault (SOAP faultcode Client), False for
    execution failures (Server).
    """

    def __init__(self, code: str, message: str, detail_chain: Sequence[str] = (), *, client: bool = True):
        self.code = code
        self.message = message
        self.detail_chain = list(detail_chain)
        self.client = client
        super().__init__(self.headline)

    @property
    def headline(self) -> str:
        return f"{self.code} {self.message}"

    @property
    def lines(self) -> list[str]:
        """Every line of the fault detail, innermost cause first, headline last."""
        return [*self.detail_chain, self.headline]

    @property
    def fault_code(self) -> str:
        return "SOAP-ENV:Client" if self.client else "SOAP-ENV:Server"

    def wrap(self, code: str, message: str) -> DataApiError:
        """This error as the cause of a new headline (e.g. SOP-330011 around a method failure)."""
        return DataApiError(code, message, self.lines, client=self.client)

    def __str__(self) -> str:
        return "\n".join(self.lines)


def expression_error(expression: str, detail: str) -> DataApiError:
    return DataApiError(PARSE_EXPRESSION, f"Unable to parse expression '{echo(expression)}'.", [detail])


def invalid_query(detail: str) -> DataApiError:
    return DataApiError(INVALID_QUERY, f"Invalid query document: {detail}")


def unknown_schema(schema_id: str) -> DataApiError:
    return DataApiError(UNKNOWN_SCHEMA, f"Schema '{echo(schema_id)}' is not defined")


def sql_not_allowed(what: str) -> DataApiError:
    return DataApiError(
        SQL_NOT_ALLOWED,
        f"Native SQL ({what}) is not allowed for this caller (requires allowSQLInjection in its security zone)",
    )


def database_error(exc: BaseException, dialect: str) -> DataApiError:
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    text = first[0] if first else type(exc).__name__
    if dialect == "postgresql":
        return DataApiError(POSTGRES_ERROR, f"PostgreSQL error: {text}", client=False)
    return DataApiError(ODBC_ERROR, f"ODBC error: {text} ({dialect})", client=False)
