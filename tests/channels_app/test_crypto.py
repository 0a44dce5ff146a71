from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from channels_app import crypto


def test_it_stores_salt_iv_tag_and_ciphertext_as_lowercase_hex() -> None:
    stored = crypto.encrypt("EAAG-secret-token")
    salt, iv, tag, ciphertext = stored.split(":")
    assert re.fullmatch(r"[0-9a-f]{32}", salt)
    assert re.fullmatch(r"[0-9a-f]{24}", iv)
    assert re.fullmatch(r"[0-9a-f]{32}", tag)
    assert re.fullmatch(r"[0-9a-f]+", ciphertext)
    assert "EAAG" not in stored


def test_it_round_trips_unicode() -> None:
    assert crypto.decrypt(crypto.encrypt("tökén ✓ 日本")) == "tökén ✓ 日本"


def test_it_uses_a_fresh_salt_and_iv_per_value() -> None:
    first, second = crypto.encrypt("same"), crypto.encrypt("same")
    assert first != second
    assert first.split(":")[0] != second.split(":")[0]
    assert first.split(":")[1] != second.split(":")[1]


def test_it_matches_the_documented_construction(settings) -> None:
    """PBKDF2-HMAC-SHA256, 100k iterations, 32-byte key, AES-256-GCM: an independent decryptor agrees."""
    settings.ENCRYPTION_KEY = "independent-check-key"
    salt_hex, iv_hex, tag_hex, ct_hex = crypto.encrypt("hello").split(":")
    key = PBKDF2HMAC(
        algorithm=hashes.SHA256(), length=32, salt=bytes.fromhex(salt_hex), iterations=100_000
    ).derive(b"independent-check-key")
    plaintext = AESGCM(key).decrypt(
        bytes.fromhex(iv_hex), bytes.fromhex(ct_hex) + bytes.fromhex(tag_hex), None
    )
    assert plaintext == b"hello"


def test_a_tampered_value_raises_a_clear_error() -> None:
    salt, iv, tag, ciphertext = crypto.encrypt("secret").split(":")
    flipped = ("0" if ciphertext[0] != "0" else "1") + ciphertext[1:]
    with pytest.raises(crypto.DecryptionError, match="altered or the key is wrong"):
        crypto.decrypt(":".join([salt, iv, tag, flipped]))


def test_a_wrong_key_raises_a_clear_error() -> None:
    stored = crypto.encrypt("secret", key="key-one")
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(stored, key="key-two")


@pytest.mark.parametrize("garbage", ["", "abc", "zz:zz:zz:zz", "00:00:00:00"])
def test_malformed_values_raise_decryption_error(garbage: str) -> None:
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(garbage)
