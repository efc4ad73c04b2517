"""IMS-style OAuth server-to-server: technical accounts, signed access tokens, JWKS, validation.

The built-in issuer signs RS256 JWTs with keys kept in `<data dir>/keys/` (made at init,
rotated with `opencampaign keys rotate`; retired keys stay published until every token they signed
has expired). External identity providers can be trusted too: `[[ims.trusted]]` entries with
`issuer`, `jwks_url` and `audience`; their tokens are checked by signature, issuer, audience,
expiry and not-before.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .passwords import hash_password, verify_password

DEFAULT_LIFETIME = 86399  # what Adobe IMS returns (business-rest-auth.md §5.1)
DEFAULT_ISSUER = "opencampaign"
DEFAULT_AUDIENCE = "campaign"
TECH_DOMAIN = "techacct.opencampaign"


class TokenError(Exception):
    """A bearer token or a credential was refused; the message never says whether an account exists."""

    def __init__(self, error: str, description: str, status: int = 401):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class BearerIdentity:
    subject: str  # technical account email, or the external token's subject
    client_id: str
    issuer: str
    groups: tuple[str, ...]
    expires: int


class KeyStore:
    """RSA signing keys on disk: one active, older ones kept for validation."""

    def __init__(self, folder: Path, lifetime: int):
        self.folder = folder
        self.lifetime = lifetime

    def ensure(self) -> None:
        if not self._active_path().exists():
            self.rotate()

    def _active_path(self) -> Path:
        return self.folder / "active"

    def rotate(self) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        kid = f"oc-{int(time.time())}-{secrets.token_hex(4)}"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        path = self.folder / f"{kid}.pem"
        path.write_bytes(pem)
        path.chmod(0o600)
        self._active_path().write_text(kid)
        self._prune(keep=kid)
        return kid

    def _prune(self, keep: str) -> None:
        # A retired key must outlive the longest token it could have signed.
        horizon = time.time() - self.lifetime - 3600
        for path in self.folder.glob("*.pem"):
            if path.stem != keep and path.stat().st_mtime < horizon:
                path.unlink()

    def active(self) -> tuple[str, Any]:
        kid = self._active_path().read_text().strip()
        return kid, serialization.load_pem_private_key((self.folder / f"{kid}.pem").read_bytes(), None)

    def public_keys(self) -> dict[str, Any]:
        keys = {}
        for path in sorted(self.folder.glob("*.pem")):
            keys[path.stem] = serialization.load_pem_private_key(path.read_bytes(), None).public_key()
        return keys

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        out = []
        for kid, public in self.public_keys().items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
            jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
            out.append(jwk)
        return {"keys": out}


class TechnicalAccounts:
    def __init__(self, storage) -> None:  # noqa: ANN001 - storage.Storage
        self.storage = storage
        self.table = storage.table("xtk:technicalAccount")

    def create(self, name: str, groups: list[str]) -> tuple[str, str, str]:
        """Returns (client_id, client_secret, technical account email); the secret is shown only here."""
        t = self.table
        client_id = uuid.uuid4().hex
        secret = "p8e-" + secrets.token_urlsafe(32)
        email = f"{client_id}@{TECH_DOMAIN}"
        new_id = self.storage.sequences.next_id("XtkNewId")
        with self.storage.write(self.storage.home("xtk:technicalAccount")) as conn:
            if conn.execute(sa.select(t.c.iTechnicalAccountId).where(t.c.sName == name)).first():
                raise ValueError(f"A technical account named '{name}' already exists.")
            conn.execute(sa.insert(t).values(
                iTechnicalAccountId=new_id, sName=name, sClientId=client_id, sSecretHash=hash_password(secret),
                sEmail=email, sProductProfiles=",".join(groups), iRevoked=0, tsCreated=_now()))
        return client_id, secret, email

    def list(self) -> list[dict[str, Any]]:
        t = self.table
        with self.storage.engine_for("xtk:technicalAccount").connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.iTechnicalAccountId != 0).order_by(t.c.sName)).all()
        return [{"name": r.sName, "client_id": r.sClientId, "email": r.sEmail,
                 "groups": [g for g in (r.sProductProfiles or "").split(",") if g], "revoked": bool(r.iRevoked),
                 "created": r.tsCreated.isoformat() if r.tsCreated else None,
                 "last_used": r.tsLastUsed.isoformat() if r.tsLastUsed else None} for r in rows]

    def revoke(self, name: str) -> None:
        t = self.table
        with self.storage.write(self.storage.home("xtk:technicalAccount")) as conn:
            if conn.execute(sa.update(t).where(t.c.sName == name).values(iRevoked=1)).rowcount == 0:
                raise ValueError(f"Unknown technical account '{name}'.")

    def check_secret(self, client_id: str, secret: str) -> sa.Row:
        t = self.table
        with self.storage.engine_for("xtk:technicalAccount").connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.sClientId == client_id, t.c.iTechnicalAccountId != 0)).first()
        if row is None or row.iRevoked or not verify_password(row.sSecretHash, secret):
            raise TokenError("invalid_client", "invalid client credentials")
        with self.storage.write(self.storage.home("xtk:technicalAccount")) as conn:
            conn.execute(sa.update(t).where(t.c.iTechnicalAccountId == row.iTechnicalAccountId).values(tsLastUsed=_now()))
        return row

    def by_client_id(self, client_id: str) -> sa.Row | None:
        t = self.table
        with self.storage.engine_for("xtk:technicalAccount").connect() as conn:
            return conn.execute(sa.select(t).where(t.c.sClientId == client_id)).first()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class TokenService:
    def __init__(self, settings, storage) -> None:  # noqa: ANN001
        ims = settings.values.get("ims", {})
        self.issuer = str(ims.get("issuer") or DEFAULT_ISSUER)
        self.audience = str(ims.get("audience") or DEFAULT_AUDIENCE)
        self.lifetime = int(ims.get("expires_in") or DEFAULT_LIFETIME)
        self.builtin_enabled = str(ims.get("builtin", "true")).lower() not in ("0", "false", "no")
        self.keys = KeyStore(settings.data_dir / "keys", self.lifetime)
        self.accounts = TechnicalAccounts(storage)
        self.trusted = [dict(t) for t in ims.get("trusted", [])]
        self._jwk_clients: dict[str, jwt.PyJWKClient] = {}

    def issue(self, client_id: str, client_secret: str, scope: str = "") -> dict[str, Any]:
        if not self.builtin_enabled:
            raise TokenError("unsupported_grant_type", "the built-in token issuer is disabled", 400)
        account = self.accounts.check_secret(client_id, client_secret)
        kid, key = self.keys.active()
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": account.sEmail, "client_id": client_id,
                  "scope": scope, "groups": [g for g in (account.sProductProfiles or "").split(",") if g],
                  "iat": now, "nbf": now, "exp": now + self.lifetime, "jti": uuid.uuid4().hex}
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
        return {"access_token": token, "token_type": "bearer", "expires_in": self.lifetime}

    def validate(self, token: str) -> BearerIdentity:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("invalid_token", "malformed bearer token") from None
        issuer = unverified.get("iss")
        try:
            if issuer == self.issuer and self.builtin_enabled:
                key = self.keys.public_keys().get(header.get("kid", ""))
                if key is None:
                    raise TokenError("invalid_token", "unknown signing key")
                claims = jwt.decode(token, key, algorithms=["RS256"], audience=self.audience, issuer=self.issuer,
                                    options={"require": ["exp", "iat", "sub"]})
                account = self.accounts.by_client_id(str(claims.get("client_id", "")))
                if account is None or account.iRevoked:
                    raise TokenError("invalid_token", "the credentials of this token were revoked")
                groups = tuple(g for g in (account.sProductProfiles or "").split(",") if g)
                return BearerIdentity(claims["sub"], claims["client_id"], issuer, groups, claims["exp"])
            trusted = next((t for t in self.trusted if t.get("issuer") == issuer), None)
            if trusted is None:
                raise TokenError("invalid_token", "token issuer is not trusted")
            client = self._jwk_clients.setdefault(issuer, jwt.PyJWKClient(trusted["jwks_url"], cache_keys=True))
            signing_key = client.get_signing_key_from_jwt(token)
            claims = jwt.decode(token, signing_key.key, algorithms=["RS256", "ES256"],
                                audience=trusted.get("audience"), issuer=issuer,
                                options={"require": ["exp", "sub"], "verify_aud": bool(trusted.get("audience"))})
        except TokenError:
            raise
        except jwt.ExpiredSignatureError:
            raise TokenError("invalid_token", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("invalid_token", "the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenError("invalid_token", "the token was issued for another audience") from None
        except jwt.InvalidIssuerError:
            raise TokenError("invalid_token", "the token issuer is not trusted") from None
        except (jwt.PyJWTError, KeyError, OSError):
            raise TokenError("invalid_token", "the token signature is invalid") from None
        groups_claim = claims.get(trusted.get("groups_claim", "groups"), [])
        groups = tuple(groups_claim if isinstance(groups_claim, list) else str(groups_claim).split(","))
        return BearerIdentity(str(claims["sub"]), str(claims.get("client_id", claims.get("azp", ""))), issuer,
                              groups, int(claims["exp"]))
