from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from channels_app.models import Channel
from channels_app.services import channel_create
from tenants.models import Membership, Workspace
from tenants.services import membership_add, user_get_or_create, workspace_create

DEMO_WORKSPACE = "Demo Workspace"
DEMO_ADMIN = ("admin@demo.local", "demo-admin-pass")
DEMO_AGENT = ("agent@demo.local", "demo-agent-pass")


class Command(BaseCommand):
    help = "Create (once) the demo workspace, an admin, an agent and a sandbox number; prints the sign-ins."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic(durable=True):
            workspace = Workspace.objects.filter(name=DEMO_WORKSPACE).first()
            if workspace is None:
                workspace, _ = workspace_create(
                    name=DEMO_WORKSPACE, admin_email=DEMO_ADMIN[0], admin_password=DEMO_ADMIN[1]
                )
            agent, _ = user_get_or_create(email=DEMO_AGENT[0], password=DEMO_AGENT[1])
            if not Membership.objects.filter(workspace=workspace, user=agent).exists():
                membership_add(workspace=workspace, user=agent, role=Membership.Role.AGENT)
            channel = workspace.channels.filter(provider=Channel.Provider.SANDBOX).first()
            if channel is None:
                channel = channel_create(
                    workspace=workspace,
                    provider=Channel.Provider.SANDBOX,
                    display_name="Sandbox number",
                    phone_number="+1 555 0100",
                )
        admin_user = get_user_model().objects.get(email=DEMO_ADMIN[0])
        result = {
            "workspace_id": str(workspace.pk),
            "channel_id": str(channel.pk),
            "admin": {"email": admin_user.email, "password": DEMO_ADMIN[1]},
            "agent": {"email": agent.email, "password": DEMO_AGENT[1]},
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(
            "\n  Demo workspace ready:\n"
            f"    admin: {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}   (also Django admin at /admin/)\n"
            f"    agent: {DEMO_AGENT[0]} / {DEMO_AGENT[1]}\n"
            "  (local demo credentials for this machine only)\n"
        )
