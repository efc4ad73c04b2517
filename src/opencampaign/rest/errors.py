"""REST errors: always JSON `{code, message}` with the status the reference lists (§4.9)."""

from __future__ import annotations

from starlette.responses import JSONResponse


class RestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(message: str) -> RestError:
    return RestError(404, message)


def bad_request(message: str) -> RestError:
    return RestError(400, message)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status, headers=headers)


GENERIC_500 = "RST-360011 An error has occurred - please contact your administrator."
