from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from tenants.access import access_membership, memberships_for_user
from tenants.middleware import SESSION_WORKSPACE_KEY


class LoginView(auth_views.LoginView):
    template_name = "tenants/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    template_name = "tenants/logged_out.html"


def _safe_next(request: HttpRequest, default: str = "/inbox/") -> str:
    target = request.POST.get("next") or request.GET.get("next") or default
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return default


@login_required
@require_http_methods(["GET", "POST"])
def workspace_select(request: HttpRequest) -> HttpResponseBase:
    if request.method == "POST":
        membership = access_membership(user=request.user, workspace_id=request.POST.get("workspace_id"))
        request.session[SESSION_WORKSPACE_KEY] = str(membership.workspace_id)
        return redirect(_safe_next(request))
    memberships = list(memberships_for_user(user=request.user))
    return render(
        request,
        "tenants/workspace_select.html",
        {"memberships": memberships, "next": _safe_next(request)},
    )


def home(request: HttpRequest) -> HttpResponse:
    return redirect("/inbox/" if request.user.is_authenticated else "/accounts/login/")
