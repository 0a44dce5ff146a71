"""Meta's webhook authenticity checks: the ``X-Hub-Signature-256`` HMAC and the GET verification handshake."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Hub-Signature-256"
SIGNATURE_PREFIX = "sha256="


def meta_signature_compute(*, app_secret: str, raw_body: bytes) -> str:
    """The header value Meta would send for this body: ``sha256=<lowercase hex>``.

    Always over the raw request bytes: Meta signs its escaped-unicode serialisation (``\\u00e9``), so
    re-serialising parsed JSON would produce other bytes and another digest.
    """
    digest = hmac.new(app_secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def meta_signature_valid(*, app_secret: str, raw_body: bytes, header_value: str | None) -> bool:
    if not app_secret or not header_value or not header_value.startswith(SIGNATURE_PREFIX):
        return False
    expected = meta_signature_compute(app_secret=app_secret, raw_body=raw_body)
    # Constant time; Meta sends lowercase hex, but tolerate an uppercase copy from a proxy.
    return hmac.compare_digest(
        expected.encode("ascii"), header_value.strip().lower().encode("ascii", "replace")
    )


def meta_verification_challenge(
    *, expected_verify_token: str, mode: str | None, verify_token: str | None, challenge: str | None
) -> str | None:
    """The challenge to echo when the handshake is valid, else None (the caller answers 403)."""
    if not expected_verify_token or mode != "subscribe" or challenge is None or verify_token is None:
        return None
    if not hmac.compare_digest(expected_verify_token.encode("utf-8"), verify_token.encode("utf-8")):
        return None
    return challenge
