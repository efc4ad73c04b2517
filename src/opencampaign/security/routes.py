"""HTTP endpoints of the built-in token issuer: `POST /ims/token/v3` and the JWKS."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .ims import TokenError, TokenService

MAX_FORM_BYTES = 16 * 1024


def routes(tokens: TokenService) -> list[BaseRoute]:
    async def token(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return _error(TokenError("invalid_request", "request too large", 413))
        form = await request.form()
        # IMS takes the parameters from the body or, for compatibility, the query string (§5.1).
        values = {k: str(v) for k, v in request.query_params.items()}
        values.update({k: str(v) for k, v in form.items()})
        if values.get("grant_type") != "client_credentials":
            return _error(TokenError("unsupported_grant_type", "grant_type must be client_credentials", 400))
        if not values.get("client_id") or not values.get("client_secret"):
            return _error(TokenError("invalid_request", "client_id and client_secret are required", 400))
        try:
            issued = tokens.issue(values["client_id"], values["client_secret"], values.get("scope", ""))
        except TokenError as exc:
            return _error(exc)
        return JSONResponse(issued, headers={"Cache-Control": "no-store"})

    async def jwks(_request: Request) -> Response:
        return JSONResponse(tokens.keys.jwks(), headers={"Cache-Control": "max-age=300"})

    return [
        Route("/ims/token/v3", token, methods=["POST"]),
        Route("/ims/keys", jwks, methods=["GET"]),
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
    ]


def _error(exc: TokenError) -> Response:
    return JSONResponse({"error": exc.error, "error_description": exc.description}, status_code=exc.status)
