#!/usr/bin/env python3
"""The project's two commands, needing only python3 and pip.

python3 scripts/dev.py run    install into .venv, migrate SQLite, seed the demo, serve on :8000
python3 scripts/dev.py test   install into .venv, then ruff, mypy and pytest on Postgres + Redis
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/wa_inbox"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def sh(*args: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env=env)
    if result.returncode != 0:
        sys.exit(result.returncode)


def install(extras: str) -> None:
    """Create .venv and install the project's dependencies, skipping work when nothing changed."""
    if not PY.exists():
        sh(sys.executable, "-m", "venv", VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()[:16]
    stamp = VENV / f".installed-{digest}"
    if stamp.exists():
        return
    sh(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    sh(PY, "-m", "pip", "install", "--quiet", f".{extras}")
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()


def reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2
        ):
            return True
    except OSError:
        return False


def run() -> None:
    install("")
    env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "true"), "HTTPS": os.environ.get("HTTPS", "false")}
    sh(PY, "manage.py", "migrate", "--noinput", "-v", "0", env=env)
    sh(PY, "manage.py", "demo_setup", env=env)
    host, port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8000")
    print(f"\n  Serving on http://{host}:{port}/  (Ctrl+C stops)\n", flush=True)
    os.chdir(ROOT)
    os.execve(  # noqa: S606  (replace this process with the server)
        str(BIN / "uvicorn"),
        [
            "uvicorn",
            "config.asgi:application",
            "--host",
            host,
            "--port",
            port,
            "--ws",
            "websockets-sansio",
            "--no-access-log",
        ],
        env,
    )


def test(pytest_args: list[str]) -> None:
    install("[dev]")
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    env.setdefault("REDIS_URL", DEFAULT_REDIS_URL)
    missing = []
    if not reachable(env["DATABASE_URL"], 5432):
        missing.append(
            f"Postgres is not reachable at {env['DATABASE_URL']}.\n"
            "    start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    if not reachable(env["REDIS_URL"], 6379):
        missing.append(
            f"Redis is not reachable at {env['REDIS_URL']}.\n"
            '    start it: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'
        )
    if not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()):
        missing.append(
            "Chromium is needed for the browser tests.\n    install it: apt-get install -y chromium"
        )
    if missing:
        print("Cannot run the tests:\n  " + "\n  ".join(missing), file=sys.stderr)
        sys.exit(2)
    sh(BIN / "ruff", "check", ".")
    sh(BIN / "ruff", "format", "--check", ".")
    sh(BIN / "mypy", ".", env=env)
    sh(
        PY,
        "-m",
        "pytest",
        "-n",
        os.environ.get("PYTEST_WORKERS", "2"),
        "--dist",
        "loadgroup",
        *pytest_args,
        env=env,
    )


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in {"run", "test"}:
        print(__doc__)
        sys.exit(2)
    if sys.argv[1] == "run":
        run()
    else:
        test(sys.argv[2:])


if __name__ == "__main__":
    main()
