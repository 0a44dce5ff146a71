"""Settings come from the environment; production refuses to start insecurely."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_python(code: str, env_overrides: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # The browser tests set DJANGO_ALLOW_ASYNC_UNSAFE in their worker; a deployment never does.
        if k
        not in {
            "SECRET_KEY",
            "ENCRYPTION_KEY",
            "DEBUG",
            "HTTPS",
            "DJANGO_SETTINGS_MODULE",
            "REDIS_URL",
            "DJANGO_ALLOW_ASYNC_UNSAFE",
        }
    }
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings", "LOCAL_DIR": str(tmp_path), **env_overrides})
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)


def test_debug_off_refuses_to_start_without_keys(tmp_path) -> None:
    result = _run_python("import django; django.setup()", {"DEBUG": "false"}, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY and ENCRYPTION_KEY must be set" in result.stderr


def test_debug_mode_generates_a_dev_key_once_and_keeps_it(tmp_path) -> None:
    code = "import django; django.setup(); from django.conf import settings; print(settings.ENCRYPTION_KEY)"
    first = _run_python(code, {"DEBUG": "true"}, tmp_path)
    second = _run_python(code, {"DEBUG": "true"}, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and len(first.stdout.strip()) > 20
    assert (tmp_path / "dev-secrets.json").exists()


def test_production_settings_pass_check_deploy(tmp_path) -> None:
    env = {
        "DEBUG": "false",
        "SECRET_KEY": "x" * 30 + "-a-long-and-random-production-secret-key",
        "ENCRYPTION_KEY": "prod-encryption-key",
        "ALLOWED_HOSTS": "inbox.example.com",
    }
    result = _run_python(
        "import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        env,
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_defaults_to_https_with_hsts_and_secure_cookies(tmp_path) -> None:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS > 0)"
    )
    env = {"DEBUG": "false", "SECRET_KEY": "k" * 50, "ENCRYPTION_KEY": "e"}
    assert _run_python(code, env, tmp_path).stdout.strip() == "True True True True"
    plain = _run_python(
        code.replace("s.SECURE_SSL_REDIRECT", "getattr(s, 'SECURE_SSL_REDIRECT', False)")
        .replace("s.SESSION_COOKIE_SECURE", "s.SESSION_COOKIE_SECURE")
        .replace("s.SECURE_HSTS_SECONDS > 0", "s.SECURE_HSTS_SECONDS"),
        {**env, "HTTPS": "false"},
        tmp_path,
    )
    assert plain.stdout.strip() == "False False False 0"


def test_redis_url_switches_the_channel_layer_and_celery_broker(tmp_path) -> None:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.CHANNEL_LAYERS['default']['BACKEND'], s.CELERY_BROKER_URL, s.CELERY_TASK_ALWAYS_EAGER)"
    )
    embedded = _run_python(code, {"DEBUG": "true"}, tmp_path).stdout.split()
    assert embedded == ["channels.layers.InMemoryChannelLayer", "memory://", "True"]
    redis = _run_python(
        code, {"DEBUG": "true", "REDIS_URL": "redis://127.0.0.1:6379/9"}, tmp_path
    ).stdout.split()
    assert redis == ["channels_redis.core.RedisChannelLayer", "redis://127.0.0.1:6379/9", "False"]


def test_migrations_apply_on_sqlite_and_nothing_is_missing(tmp_path) -> None:
    env = {"DEBUG": "true", "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}"}
    migrate = _run_python(
        "from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'migrate', '-v', '0'])",
        env,
        tmp_path,
    )
    assert migrate.returncode == 0, migrate.stderr
    check = _run_python(
        "from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'makemigrations', '--check', '--dry-run'])",
        env,
        tmp_path,
    )
    assert check.returncode == 0, check.stdout + check.stderr
