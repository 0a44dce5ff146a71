from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse


def workspace_member_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in, with a workspace chosen, and that workspace active; otherwise say why."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        membership = getattr(request, "membership", None)
        if membership is None:
            return redirect(f"{reverse('tenants:workspace_select')}?next={request.get_full_path()}")
        if not membership.workspace.is_active:
            return render(request, "tenants/suspended.html", {"workspace": membership.workspace}, status=403)
        return view(request, *args, **kwargs)

    return wrapped
