"""Argument lookups shared by the provisioning commands: a clear CommandError instead of a traceback."""

from __future__ import annotations

import uuid

from django.core.management.base import CommandError

from tenants.models import Workspace


def workspace_by_id(value: str) -> Workspace:
    try:
        return Workspace.objects.get(pk=uuid.UUID(str(value)))
    except (ValueError, Workspace.DoesNotExist):
        raise CommandError(f"no workspace with id {value!r}") from None
