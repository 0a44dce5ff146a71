"""Tenant-scoped lookups of channels: another workspace's channel is a 404."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404

from channels_app.models import Channel
from tenants.access import member_workspace_ids


def channels_for_user(*, user: Any, workspace: Any | None = None) -> QuerySet[Channel]:
    qs = Channel.objects.filter(workspace_id__in=member_workspace_ids(user=user))
    if workspace is not None:
        qs = qs.filter(workspace=workspace)
    return qs


def access_channel(*, user: Any, channel_id: Any, workspace: Any | None = None) -> Channel:
    try:
        return channels_for_user(user=user, workspace=workspace).get(pk=channel_id)
    except (Channel.DoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404("No such channel") from None
