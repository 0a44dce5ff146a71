"""The scriptable provisioning commands: one JSON object on stdout, non-zero exit on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from channels_app.models import Channel
from channels_app.services import channel_token_read
from tenants.models import ApiToken, Membership, Workspace
from tenants.services import hash_api_token

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> dict:
    out = StringIO()
    call_command(*args, stdout=out)
    return json.loads(out.getvalue())


def test_workspace_create_makes_a_staff_admin() -> None:
    result = run(
        "workspace_create",
        "--name",
        "Acme",
        "--admin-email",
        "Ann@Acme.test",
        "--admin-password",
        "pw-12345678",
    )
    workspace = Workspace.objects.get(pk=result["workspace_id"])
    membership = Membership.objects.get(workspace=workspace)
    assert membership.user.pk == result["user_id"]
    assert membership.role == Membership.Role.ADMIN
    assert membership.user.is_staff and not membership.user.is_superuser
    assert membership.user.email == "ann@acme.test"
    assert membership.user.check_password("pw-12345678")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "", "--admin-email", "a@b.test", "--admin-password", "pw-12345678"], "needs a name"),
        (
            ["--name", "X", "--admin-email", "not-an-email", "--admin-password", "pw-12345678"],
            "not a valid email",
        ),
        (["--name", "X", "--admin-email", "new@b.test", "--admin-password", "short"], "at least 8"),
    ],
)
def test_workspace_create_refuses_bad_input(args, message) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("workspace_create", *args, stdout=StringIO())
    assert not Workspace.objects.exists()


def test_member_add_adds_an_agent() -> None:
    ws = run(
        "workspace_create",
        "--name",
        "Acme",
        "--admin-email",
        "ann@acme.test",
        "--admin-password",
        "pw-12345678",
    )
    result = run(
        "member_add",
        "--workspace",
        ws["workspace_id"],
        "--email",
        "bo@acme.test",
        "--password",
        "pw-12345678",
        "--role",
        "agent",
    )
    membership = Membership.objects.get(user_id=result["user_id"])
    assert membership.role == "agent" and not membership.user.is_staff


def test_member_add_refuses_an_unknown_workspace_and_a_second_membership() -> None:
    with pytest.raises(CommandError, match="no workspace"):
        call_command(
            "member_add",
            "--workspace",
            "nope",
            "--email",
            "x@y.test",
            "--password",
            "pw-12345678",
            stdout=StringIO(),
        )
    ws = run(
        "workspace_create",
        "--name",
        "Acme",
        "--admin-email",
        "ann@acme.test",
        "--admin-password",
        "pw-12345678",
    )
    with pytest.raises(CommandError, match="already a member"):
        call_command(
            "member_add", "--workspace", ws["workspace_id"], "--email", "ann@acme.test", stdout=StringIO()
        )


def test_channel_create_prints_the_webhook_url_and_never_the_secret(capsys) -> None:
    ws = run(
        "workspace_create",
        "--name",
        "Acme",
        "--admin-email",
        "ann@acme.test",
        "--admin-password",
        "pw-12345678",
    )
    out = StringIO()
    call_command(
        "channel_create",
        "--workspace",
        ws["workspace_id"],
        "--provider",
        "whapi",
        "--name",
        "Support",
        "--phone",
        "+491700000",
        "--api-token",
        "whapi-secret-token",
        "--webhook-secret",
        "hook-secret",
        "--whapi-channel-id",
        "MANTIS-M72HC",
        "--rate-limit",
        "3",
        stdout=out,
    )
    text = out.getvalue()
    result = json.loads(text)
    assert "whapi-secret-token" not in text and "hook-secret" not in text
    channel = Channel.objects.get(pk=result["channel_id"])
    assert result["webhook_url"].endswith(f"/webhooks/whapi/{channel.pk}/")
    assert channel.rate_limit_per_second == 3
    assert channel_token_read(channel=channel, token_type="webhook_secret") == "hook-secret"


def test_channel_create_refuses_a_meta_number_without_its_id() -> None:
    ws = run(
        "workspace_create",
        "--name",
        "Acme",
        "--admin-email",
        "ann@acme.test",
        "--admin-password",
        "pw-12345678",
    )
    with pytest.raises(CommandError, match="phone_number_id"):
        call_command(
            "channel_create",
            "--workspace",
            ws["workspace_id"],
            "--provider",
            "meta",
            "--name",
            "M",
            "--phone",
            "+1",
            stdout=StringIO(),
        )


def test_apitoken_create_shows_the_token_once_and_stores_its_hash() -> None:
    ws = run(
        "workspace_create",
        "--name",
        "Acme",
        "--admin-email",
        "ann@acme.test",
        "--admin-password",
        "pw-12345678",
    )
    result = run("apitoken_create", "--workspace", ws["workspace_id"], "--email", "ann@acme.test")
    stored = ApiToken.objects.get()
    assert stored.token_hash == hash_api_token(result["token"])
    assert result["token"] not in str(stored.__dict__)


def test_apitoken_create_refuses_a_non_member() -> None:
    ws = run(
        "workspace_create",
        "--name",
        "Acme",
        "--admin-email",
        "ann@acme.test",
        "--admin-password",
        "pw-12345678",
    )
    other = run(
        "workspace_create",
        "--name",
        "Other",
        "--admin-email",
        "zed@o.test",
        "--admin-password",
        "pw-12345678",
    )
    assert other
    with pytest.raises(CommandError, match="not a member"):
        call_command(
            "apitoken_create", "--workspace", ws["workspace_id"], "--email", "zed@o.test", stdout=StringIO()
        )


def test_a_command_exits_non_zero_with_a_clear_message_on_stderr(tmp_path) -> None:
    """The real process: exit status and stderr, as a provisioning script sees them (SQLite, throwaway)."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "LOCAL_DIR": str(tmp_path)}
    env.pop("PYTEST_XDIST_WORKER", None)
    python = sys.executable
    subprocess.run(
        [python, "manage.py", "migrate", "-v", "0", "--settings", "tests.settings"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    ok = subprocess.run(
        [
            python,
            "manage.py",
            "workspace_create",
            "--settings",
            "tests.settings",
            "--name",
            "Acme",
            "--admin-email",
            "a@acme.test",
            "--admin-password",
            "pw-12345678",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and set(json.loads(ok.stdout)) == {"workspace_id", "user_id"}
    bad = subprocess.run(
        [
            python,
            "manage.py",
            "member_add",
            "--settings",
            "tests.settings",
            "--workspace",
            "nope",
            "--email",
            "x@y.test",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0
    assert "no workspace with id 'nope'" in bad.stderr
    assert bad.stdout == ""
