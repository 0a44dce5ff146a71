"""Loading provider webhook fixtures (tests/webhooks/fixtures/<provider>/): published samples + variations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(provider: str, name: str) -> bytes:
    return (FIXTURES / provider / name).read_bytes()


def fixture(provider: str, name: str) -> Any:
    return json.loads(fixture_bytes(provider, name))
