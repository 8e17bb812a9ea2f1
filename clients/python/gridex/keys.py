# SPDX-License-Identifier: Apache-2.0
"""Ed25519 key files: PEM PKCS#8 (RFC 8410), as `gridex keygen` and
`openssl genpkey -algorithm ed25519` write them."""

from __future__ import annotations

import base64
import os

import nacl.signing

# The fixed DER of a PKCS#8 Ed25519 private key, before its 32-byte seed.
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_BEGIN = "-----BEGIN PRIVATE KEY-----"
_END = "-----END PRIVATE KEY-----"


class KeyFileError(ValueError):
    """A key file that is missing, unreadable or not an Ed25519 private key."""


def load_signing_key(path: str) -> nacl.signing.SigningKey:
    """The signing key of a PEM Ed25519 private key file."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"key file {path}: {e}") from e
    start, end = text.find(_BEGIN), text.find(_END)
    if start < 0 or end < start:
        raise KeyFileError(f"key file {path}: not a PEM private key")
    body = "".join(text[start + len(_BEGIN):end].split())
    try:
        der = base64.b64decode(body, validate=True)
    except ValueError as e:
        raise KeyFileError(f"key file {path}: bad base64") from e
    if len(der) != len(_PKCS8_PREFIX) + 32 or not der.startswith(_PKCS8_PREFIX):
        raise KeyFileError(f"key file {path}: not an Ed25519 private key")
    return nacl.signing.SigningKey(der[len(_PKCS8_PREFIX):])


def keygen(path: str) -> bytes:
    """Writes a new key to path (mode 0600, never overwriting); returns the public key."""
    key = nacl.signing.SigningKey.generate()
    der = _PKCS8_PREFIX + bytes(key)
    pem = _BEGIN + "\n" + base64.b64encode(der).decode("ascii") + "\n" + _END + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(pem)
    return bytes(key.verify_key)


def public_key(path: str) -> bytes:
    """The 32-byte public key of a key file."""
    return bytes(load_signing_key(path).verify_key)
