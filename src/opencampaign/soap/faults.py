"""SOAP faults with Campaign error codes (soap-protocol.md §9, data-model.md §7).

The fault string starts with the `AAA-NNNNNN` code (the SDK extracts it with `(\\w{3}-\\d{6})(.*)`);
the detail lists the cause chain innermost first and ends with the fault string, as Campaign does.
Every failure of a method is turned into one of these by `from_exception`.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from ..methods.registry import MethodError
from ..query.errors import DataApiError, database_error
from ..schema.errors import UnknownSchemaError
from ..xmlsafe import XMLInputError

# Campaign's codes
METHOD_NOT_DEFINED = "SOP-330006"  # The method 'X' is not defined in SOAP service 'Y'.
EXECUTION_ERROR = "SOP-330011"  # Error while executing the method 'X' of service 'Y'.
WRONG_URN = "SOP-330024"  # Unspecified function library (method called on the wrong urn)
SESSION_INVALID = "XSV-350008"  # Session has expired or is invalid. Please reconnect.
NOT_IMPLEMENTED = "BAS-010007"  # Function not implemented
# invented: same family, unused numbers (docs/soap.md lists them)
INVALID_MESSAGE = "SOP-330001"  # The XML SOAP message is invalid.
RATE_LIMITED = "SOP-330429"  # Too many requests: the per-API TPS limit is reached (HTTP 429)
BAD_REQUEST = "SOP-330002"  # HTTP-level refusal: size, content type, missing SOAPAction
READING_PARAMETERS = "SOP-330012"  # Error while reading parameters of method 'X' of service 'Y'.

SESSION_MESSAGE = "Session has expired or is invalid. Please reconnect."
log = logging.getLogger("opencampaign.soap")


class SoapFault(Exception):
    def __init__(self, code: str, message: str, chain: list[str] | None = None, *, client: bool = True,
                 status: int = 200, headers: dict[str, str] | None = None):
        super().__init__(f"{code} {message}")
        self.headers = headers or {}
        self.code = code
        self.message = message
        self.chain = chain or []  # causes, innermost first
        self.client = client
        self.status = status  # HTTP status: 200 so that clients read the Campaign code (§9.2)

    @property
    def headline(self) -> str:
        return f"{self.code} {self.message}"

    @property
    def faultcode(self) -> str:
        return "SOAP-ENV:Client" if self.client else "SOAP-ENV:Server"

    @property
    def lines(self) -> list[str]:
        return [*self.chain, self.headline] if self.chain else []


def session_invalid(reason: str = "") -> SoapFault:
    return SoapFault(SESSION_INVALID, SESSION_MESSAGE + (f" ({reason})" if reason else ""))


def not_defined(method: str, service: str) -> SoapFault:
    return SoapFault(METHOD_NOT_DEFINED, f"The method '{method}' is not defined in SOAP service '{service}'.")


def _wrap(method: str, service: str, lines: list[str], *, client: bool) -> SoapFault:
    return SoapFault(EXECUTION_ERROR, f"Error while executing the method '{method}' of service '{service}'.",
                     lines, client=client)


# Codes that name the problem themselves and must reach the client unwrapped.
_UNWRAPPED = {SESSION_INVALID, METHOD_NOT_DEFINED, "SOP-330007", NOT_IMPLEMENTED, "XSV-350012", "XSV-350013",
              READING_PARAMETERS}


def from_exception(exc: BaseException, method: str, service: str, request_id: str, dialect: str = "") -> SoapFault:
    """The fault for any failure of a method call; unexpected ones are logged with their stack."""
    if isinstance(exc, SoapFault):
        return exc
    if isinstance(exc, MethodError):
        if exc.code in _UNWRAPPED:
            return SoapFault(exc.code, exc.message, list(exc.detail), client=exc.client)
        return _wrap(method, service, [*exc.detail, f"{exc.code} {exc.message}"], client=exc.client)
    if isinstance(exc, DataApiError):
        return _wrap(method, service, exc.lines, client=exc.client)
    if isinstance(exc, UnknownSchemaError):
        return _wrap(method, service, [str(exc)], client=True)
    if isinstance(exc, XMLInputError):
        return SoapFault(READING_PARAMETERS, f"Error while reading parameters of method '{method}' of service "
                         f"'{service}'.", [str(exc)])
    if isinstance(exc, sa.exc.DBAPIError):
        log.error("request %s: database error in %s#%s", request_id, service, method, exc_info=exc)
        return _wrap(method, service, database_error(exc, dialect or "sql").lines, client=False)
    log.error("request %s: internal error in %s#%s", request_id, service, method, exc_info=exc)
    return _wrap(method, service, [f"Internal server error (request id {request_id}); see the server log."],
                 client=False)
