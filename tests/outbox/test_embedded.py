"""The embedded mode's outbox (SQLite, no Redis, tasks in-process): claim, send and record end to end.

The drain's claim and load have a Postgres path and a SQLite path; the rest of the suite runs on
Postgres, so this drives the SQLite one in a real process, as ``scripts/dev.py run`` starts it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json
from django.utils import timezone
from datetime import timedelta
from channels_app.models import Channel
from inbox.models import Chat, Message
from inbox.services import message_send
from outbox.services import outbox_drain

channel = Channel.objects.get(provider="sandbox")
chats = [
    Chat.objects.create(workspace=channel.workspace, channel=channel, wa_chat_id=f"4915550{n:04d}@s.whatsapp.net",
                        window_expires_at=timezone.now() + timedelta(hours=1))
    for n in range(3)
]
sent = [message_send(chat=chat, sender=None, client_message_id=f"embedded-{n}", text=f"hi {n}")
        for n, chat in enumerate(chats)]
report = outbox_drain(batch_size=50)
statuses = sorted(Message.objects.filter(pk__in=[m.pk for m in sent]).values_list("status", flat=True))
ids = Message.objects.filter(pk__in=[m.pk for m in sent]).exclude(wa_message_id=None).count()
print(json.dumps({"sent": report.sent, "statuses": statuses, "with_ids": ids}))
"""


def test_the_embedded_sqlite_drain_sends_and_records_a_batch(tmp_path) -> None:
    env = {
        **os.environ,
        "DEBUG": "true",
        "HTTPS": "false",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
        "LOCAL_DIR": str(tmp_path),
        "OUTBOX_AUTO_DRAIN": "false",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run([*manage, "demo_setup"], cwd=ROOT, env=env, check=True, capture_output=True)
    done = subprocess.run(
        [*manage, "shell", "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["sent"] == 3
    assert result["with_ids"] == 3
    assert all(status in {"sent", "delivered", "read"} for status in result["statuses"])
