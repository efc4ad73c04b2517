"""Opaque PKeys and cursors: `@` + base64url(tag + encrypted payload), per-instance secret.

The tag covers a purpose string (the schema id, or `cursor:<schema>`), so a key minted for one
resource cannot address another, and no key can be forged without the secret kept in the data dir.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

SECRET_FILE = "rest-pkey.secret"
TAG_BYTES = 12


def load_secret(data_dir: Path) -> bytes:
    path = Path(data_dir) / SECRET_FILE
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    secret = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret.hex())
    try:
        os.link(tmp, path)  # first writer wins when two processes race
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())


class PKeyCodec:
    def __init__(self, secret: bytes):
        self._secret = secret

    def _tag(self, purpose: str, payload: bytes) -> bytes:
        return hmac.new(self._secret, purpose.encode() + b"\0" + payload, hashlib.sha256).digest()[:TAG_BYTES]

    def _stream(self, tag: bytes, size: int) -> bytes:
        out, counter = b"", 0
        while len(out) < size:
            out += hmac.new(self._secret, b"stream\0" + tag + counter.to_bytes(4, "big"), hashlib.sha256).digest()
            counter += 1
        return out[:size]

    def encode(self, purpose: str, values: list) -> str:
        """Deterministic authenticated encryption (SIV-style): tag = MAC(payload), body = payload ^ KS(tag)."""
        payload = json.dumps(values, separators=(",", ":")).encode()
        tag = self._tag(purpose, payload)
        body = bytes(a ^ b for a, b in zip(payload, self._stream(tag, len(payload)), strict=True))
        return "@" + base64.urlsafe_b64encode(tag + body).rstrip(b"=").decode()

    def decode(self, purpose: str, key: str) -> list | None:
        """The values of `key`, or None when it is malformed or not minted for `purpose`."""
        if not key.startswith("@") or len(key) > 2048:
            return None
        text = key[1:]
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except ValueError:
            return None
        if len(raw) <= TAG_BYTES:
            return None
        tag, body = raw[:TAG_BYTES], raw[TAG_BYTES:]
        payload = bytes(a ^ b for a, b in zip(body, self._stream(tag, len(body)), strict=True))
        if not hmac.compare_digest(tag, self._tag(purpose, payload)):
            return None
        try:
            values = json.loads(payload)
        except ValueError:
            return None
        return values if isinstance(values, list) else None
