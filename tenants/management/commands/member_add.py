from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from tenants.management.lookup import workspace_by_id
from tenants.models import Membership
from tenants.services import TenantError, membership_add, user_get_or_create


class Command(BaseCommand):
    help = "Add a person to a workspace (creating their account if needed); prints {user_id} as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True, help="workspace id")
        parser.add_argument("--email", required=True)
        parser.add_argument("--password", default=None)
        parser.add_argument("--role", choices=Membership.Role.values, default=Membership.Role.AGENT)

    def handle(self, *args: Any, **options: Any) -> None:
        workspace = workspace_by_id(options["workspace"])
        try:
            with transaction.atomic(durable=True):
                user, _ = user_get_or_create(email=options["email"], password=options["password"])
                membership_add(workspace=workspace, user=user, role=options["role"])
        except TenantError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps({"user_id": user.pk}))
