from __future__ import annotations

from typing import Any

from tenants.models import Membership


def current_membership(user: Any, chosen_workspace_id: str | None) -> Membership | None:
    """The membership of the workspace chosen in the session, or the only one the user has."""
    if not getattr(user, "is_authenticated", False):
        return None
    memberships = Membership.objects.filter(user=user).select_related("workspace")
    if chosen_workspace_id:
        chosen = memberships.filter(workspace_id=chosen_workspace_id).first()
        if chosen is not None:
            return chosen
    first_two = list(memberships[:2])
    return first_two[0] if len(first_two) == 1 else None
