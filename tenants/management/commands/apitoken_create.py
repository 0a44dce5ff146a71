from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.management.lookup import workspace_by_id
from tenants.services import TenantError, apitoken_create


class Command(BaseCommand):
    help = "Issue an API token for a member; prints {token} as JSON. The token is shown only this once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True)
        parser.add_argument("--email", required=True)
        parser.add_argument("--name", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        workspace = workspace_by_id(options["workspace"])
        user = get_user_model().objects.filter(email__iexact=options["email"].strip()).first()
        if user is None:
            raise CommandError(f"no user with email {options['email']!r}")
        try:
            issued = apitoken_create(workspace=workspace, user=user, name=options["name"])
        except TenantError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps({"token": issued.token}))
