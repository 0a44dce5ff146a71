"""Provider secrets at rest: AES-256-GCM with a PBKDF2-HMAC-SHA256 key from ENCRYPTION_KEY.

Stored form: ``salt:iv:authTag:ciphertext``, each part lowercase hex. A fresh 16-byte salt and
12-byte IV per value, so the same token never encrypts to the same string twice.
"""

from __future__ import annotations

import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from django.conf import settings

PBKDF2_ITERATIONS = 100_000
SALT_BYTES = 16
IV_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32


class DecryptionError(Exception):
    """A stored value could not be decrypted: tampered with, truncated, or encrypted with another key."""


@lru_cache(maxsize=256)
def _derive_key(master_key: str, salt: bytes) -> bytes:
    # Cached because PBKDF2 at 100k iterations costs ~50 ms and the sender reads tokens per batch.
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, iterations=PBKDF2_ITERATIONS)
    return kdf.derive(master_key.encode("utf-8"))


def _master_key(key: str | None) -> str:
    master = key if key is not None else settings.ENCRYPTION_KEY
    if not master:
        raise DecryptionError("ENCRYPTION_KEY is not set")
    return master


def encrypt(plaintext: str, *, key: str | None = None) -> str:
    salt = os.urandom(SALT_BYTES)
    iv = os.urandom(IV_BYTES)
    sealed = AESGCM(_derive_key(_master_key(key), salt)).encrypt(iv, plaintext.encode("utf-8"), None)
    ciphertext, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
    return ":".join(part.hex() for part in (salt, iv, tag, ciphertext))


def decrypt(stored: str, *, key: str | None = None) -> str:
    try:
        salt_hex, iv_hex, tag_hex, ciphertext_hex = stored.split(":")
        salt, iv, tag = bytes.fromhex(salt_hex), bytes.fromhex(iv_hex), bytes.fromhex(tag_hex)
        ciphertext = bytes.fromhex(ciphertext_hex)
    except (ValueError, AttributeError):
        raise DecryptionError("stored value is not in salt:iv:authTag:ciphertext hex form") from None
    if len(salt) != SALT_BYTES or len(iv) != IV_BYTES or len(tag) != TAG_BYTES:
        raise DecryptionError("stored value has a salt, IV or tag of the wrong length")
    try:
        plaintext = AESGCM(_derive_key(_master_key(key), salt)).decrypt(iv, ciphertext + tag, None)
    except InvalidTag:
        raise DecryptionError("authentication failed: the value was altered or the key is wrong") from None
    return plaintext.decode("utf-8")
