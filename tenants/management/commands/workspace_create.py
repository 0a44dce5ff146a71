from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from tenants.services import TenantError, workspace_create


class Command(BaseCommand):
    help = "Create a workspace and its first admin; prints {workspace_id, user_id} as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--admin-email", required=True)
        parser.add_argument("--admin-password", required=False, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with transaction.atomic(durable=True):
                workspace, user = workspace_create(
                    name=options["name"],
                    admin_email=options["admin_email"],
                    admin_password=options["admin_password"],
                )
        except TenantError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps({"workspace_id": str(workspace.pk), "user_id": user.pk}))
