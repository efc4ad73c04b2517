"""Operators, lockout, technical accounts and bearer tokens (built-in and external issuers)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import rsa

from opencampaign.instance import Instance
from opencampaign.security.identity import BearerAuthenticator, group_of_profile
from opencampaign.security.ims import TokenError, TokenService
from opencampaign.security.operators import LogonError, Operators

ENV = {"OPENCAMPAIGN_ADMIN_PASSWORD": "admin-pw"}


@pytest.fixture
def instance(tmp_path: Path):
    inst = Instance.open(tmp_path / "inst", environ=ENV)
    inst.init(environ=ENV)
    yield inst
    inst.close()


def test_admin_holds_admin_right_through_its_group(instance: Instance):
    admin = Operators(instance.storage).authenticate("admin", "admin-pw")
    assert "admin" in admin.rights and ("admin" in [n for _i, n in admin.groups])
    assert admin.context().is_admin


def test_rights_are_additive_across_groups_and_direct_grants(instance: Instance):
    ops = Operators(instance.storage)
    ops.create("ann", "pw", groups=["deliveryOperators"])
    ann = ops.grant("ann", rights=["export"], groups=["campaignManagers"])
    assert {"prepareDelivery", "startDelivery", "workflow", "insertFolder", "export"} <= ann.rights
    assert "admin" not in ann.rights and not ann.context().is_admin


def test_three_wrong_passwords_ban_the_account_and_the_ban_grows(instance: Instance):
    ops = Operators(instance.storage)
    ops.create("eve", "right-pw")
    start = datetime.now(UTC).replace(tzinfo=None)
    for i in range(3):
        with pytest.raises(LogonError) as info:
            ops.authenticate("eve", "wrong", now=start + timedelta(seconds=i))
        assert info.value.code == "XSV-350012"
    # Banned: even the right password is refused, with the same message.
    with pytest.raises(LogonError):
        ops.authenticate("eve", "right-pw", now=start + timedelta(seconds=10))
    table = instance.storage.table("xtk:operator")
    with instance.storage.engine_for("xtk:operator").connect() as conn:
        first_ban = conn.execute(sa.select(table.c.tsBannedUntil).where(table.c.sName == "eve")).scalar()
    assert timedelta(seconds=290) < first_ban - start < timedelta(seconds=310)
    # After the ban, one more failure bans for twice as long.
    after = first_ban + timedelta(seconds=1)
    with pytest.raises(LogonError):
        ops.authenticate("eve", "wrong", now=after)
    with instance.storage.engine_for("xtk:operator").connect() as conn:
        second_ban = conn.execute(sa.select(table.c.tsBannedUntil).where(table.c.sName == "eve")).scalar()
    assert timedelta(seconds=590) < second_ban - after < timedelta(seconds=610)
    assert ops.authenticate("eve", "right-pw", now=second_ban + timedelta(seconds=1)).name == "eve"


def test_failures_outside_the_examination_window_are_forgotten(instance: Instance):
    ops = Operators(instance.storage)
    ops.create("sam", "pw")
    start = datetime.now(UTC).replace(tzinfo=None)
    for i in range(2):
        with pytest.raises(LogonError):
            ops.authenticate("sam", "bad", now=start + timedelta(seconds=i))
    later = start + timedelta(minutes=11)
    with pytest.raises(LogonError):
        ops.authenticate("sam", "bad", now=later)
    assert ops.authenticate("sam", "pw", now=later + timedelta(seconds=1)).name == "sam"


def test_unknown_login_and_wrong_password_look_the_same(instance: Instance):
    ops = Operators(instance.storage)
    with pytest.raises(LogonError) as unknown:
        ops.authenticate("nobody", "x")
    with pytest.raises(LogonError) as wrong:
        ops.authenticate("admin", "x")
    assert str(unknown.value) == str(wrong.value)


def test_token_issue_validate_rotate_revoke(instance: Instance):
    tokens = TokenService(instance.settings, instance.storage)
    client_id, secret, email = tokens.accounts.create("crm", ["campaign - prod - deliveryOperators"])
    issued = tokens.issue(client_id, secret, "campaign_sdk")
    assert issued["token_type"] == "bearer" and issued["expires_in"] == 86399
    identity = tokens.validate(issued["access_token"])
    assert identity.subject == email and identity.client_id == client_id
    tokens.keys.rotate()
    assert tokens.validate(issued["access_token"]).subject == email  # older key still accepted
    with pytest.raises(TokenError):
        tokens.issue(client_id, "wrong-secret")
    tampered = issued["access_token"][:-4] + ("AAAA" if not issued["access_token"].endswith("AAAA") else "BBBB")
    with pytest.raises(TokenError):
        tokens.validate(tampered)
    tokens.accounts.revoke("crm")
    with pytest.raises(TokenError, match="revoked"):
        tokens.validate(issued["access_token"])
    with pytest.raises(TokenError):
        tokens.issue(client_id, secret)


def test_expired_and_foreign_tokens_are_refused(instance: Instance):
    tokens = TokenService(instance.settings, instance.storage)
    client_id, _secret, email = tokens.accounts.create("old", [])
    kid, key = tokens.keys.active()
    now = int(time.time())
    base = {"iss": tokens.issuer, "aud": tokens.audience, "sub": email, "client_id": client_id, "iat": now}
    expired = jwt.encode({**base, "exp": now - 10}, key, algorithm="RS256", headers={"kid": kid})
    with pytest.raises(TokenError, match="expired"):
        tokens.validate(expired)
    wrong_aud = jwt.encode({**base, "aud": "other", "exp": now + 60}, key, algorithm="RS256", headers={"kid": kid})
    with pytest.raises(TokenError, match="audience"):
        tokens.validate(wrong_aud)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({**base, "exp": now + 60}, stranger, algorithm="RS256", headers={"kid": kid})
    with pytest.raises(TokenError):
        tokens.validate(forged)
    unknown_issuer = jwt.encode({**base, "iss": "https://evil.example", "exp": now + 60}, stranger, algorithm="RS256")
    with pytest.raises(TokenError, match="not trusted"):
        tokens.validate(unknown_issuer)


def test_technical_operator_is_created_on_first_use_with_profile_groups(instance: Instance):
    tokens = TokenService(instance.settings, instance.storage)
    ops = Operators(instance.storage)
    client_id, secret, email = tokens.accounts.create("etl", ["campaign - prod - deliveryOperators"])
    auth = BearerAuthenticator(tokens, ops)
    assert ops.load(email) is None
    ctx = auth.context(tokens.issue(client_id, secret)["access_token"])
    assert ctx.login == email and ctx.has_right("startDelivery") and not ctx.is_admin
    operator = ops.load(email)
    assert operator is not None and operator.type == 1
    assert group_of_profile("campaign - prod - admin") == "admin"


class _Issuer:
    """A second, independent token issuer on loopback that publishes its JWKS over HTTP."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        public.update({"kid": "ext-1", "use": "sig", "alg": "RS256"})
        body = json.dumps({"keys": [public]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, **claims: object) -> str:
        now = int(time.time())
        payload = {"iss": "https://idp.test", "aud": "campaign-api", "sub": "svc@idp.test", "iat": now,
                   "nbf": now - 5, "exp": now + 300, "groups": ["campaign - prod - deliveryOperators"], **claims}
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": "ext-1"})


def test_external_identity_provider_can_be_trusted(instance: Instance):
    issuer = _Issuer()
    try:
        instance.settings.values["ims"] = {"trusted": [
            {"issuer": "https://idp.test", "jwks_url": issuer.url, "audience": "campaign-api"}]}
        tokens = TokenService(instance.settings, instance.storage)
        identity = tokens.validate(issuer.token())
        assert identity.subject == "svc@idp.test" and identity.issuer == "https://idp.test"
        ctx = BearerAuthenticator(tokens, Operators(instance.storage)).context(issuer.token(jti="2"))
        assert ctx.has_right("prepareDelivery")
        with pytest.raises(TokenError, match="audience"):
            tokens.validate(issuer.token(aud="someone-else"))
        with pytest.raises(TokenError, match="expired"):
            tokens.validate(issuer.token(exp=int(time.time()) - 60))
        with pytest.raises(TokenError, match="not valid yet"):
            tokens.validate(issuer.token(nbf=int(time.time()) + 600))
    finally:
        issuer.server.shutdown()
