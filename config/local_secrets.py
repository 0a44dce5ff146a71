"""Development secrets for the embedded default, generated once and kept in an ignored file."""

from __future__ import annotations

import json
import secrets
from pathlib import Path


def load_or_create_dev_secrets(directory: Path) -> dict[str, str]:
    path = directory / "dev-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    directory.mkdir(parents=True, exist_ok=True)
    values = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ENCRYPTION_KEY": secrets.token_urlsafe(32),
    }
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values
