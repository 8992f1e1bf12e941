"""An independent implementation of Barbican's sealed session cookie (src/seal.rs,
src/oidc.rs), for tests that need cookies Barbican never issued: expired ones, ones sealed
under a foreign secret. It doubles as a check that the format is what the code says:

  key      = HMAC-SHA256(secret, "barbican/v1/aead/session")
  key id   = HMAC-SHA256(secret, "barbican/v1/key-id")[0]
  cookie   = base64url_nopad(key_id || nonce[12] || ChaCha20-Poly1305(key, nonce,
             plaintext, aad="session"))
  plaintext = 0x01 || exp u64le || str(sub) || opt(user) || opt(email) || opt(name)
              || u64le(len(groups)) || str(group)...
  str(s) = u32le(len) || utf-8;  opt(None) = 0x00, opt(s) = 0x01 || str(s)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from typing import Sequence

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305


def _derive(secret: bytes, label: str) -> bytes:
    return hmac.new(secret, b"barbican/v1/" + label.encode(), hashlib.sha256).digest()


def _s(v: str) -> bytes:
    b = v.encode()
    return struct.pack("<I", len(b)) + b


def _opt(v: str | None) -> bytes:
    return b"\x00" if v is None else b"\x01" + _s(v)


def session_plaintext(sub: str, exp: int, user: str | None = None, email: str | None = None,
                      name: str | None = None, groups: Sequence[str] = ()) -> bytes:
    out = b"\x01" + struct.pack("<Q", exp) + _s(sub) + _opt(user) + _opt(email) + _opt(name)
    out += struct.pack("<Q", len(groups)) + b"".join(_s(g) for g in groups)
    return out


def seal(secret: str | bytes, plaintext: bytes, purpose: str = "session") -> str:
    secret = secret.encode() if isinstance(secret, str) else secret
    key = _derive(secret, f"aead/{purpose}")
    kid = _derive(secret, "key-id")[0]
    nonce = os.urandom(12)
    ct = ChaCha20Poly1305(key).encrypt(nonce, plaintext, purpose.encode())
    return base64.urlsafe_b64encode(bytes([kid]) + nonce + ct).rstrip(b"=").decode()


def open_sealed(secret: str | bytes, value: str, purpose: str = "session") -> bytes:
    secret = secret.encode() if isinstance(secret, str) else secret
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    key = _derive(secret, f"aead/{purpose}")
    return ChaCha20Poly1305(key).decrypt(raw[1:13], raw[13:], purpose.encode())


def session_cookie(secret: str, sub: str, exp: int, **kw) -> str:
    return seal(secret, session_plaintext(sub, exp, **kw))
