from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from tenants import login_throttle
from tenants.access import access_membership, memberships_for_user
from tenants.middleware import SESSION_WORKSPACE_KEY
from tenants.services import audit_record

logger = logging.getLogger(__name__)

LOCKED_OUT_MESSAGE = "Too many failed sign-in attempts. Wait 15 minutes and try again."


def client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"


class LoginView(auth_views.LoginView):
    template_name = "tenants/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        username = request.POST.get("username", "")
        if login_throttle.is_locked_out(username=username, ip_address=client_ip(request)):
            logger.warning("sign-in refused: locked out", extra={"ip": client_ip(request)})
            audit_record(
                action="auth.sign_in_locked_out",
                data={"username": username[:150]},
                ip_address=client_ip(request),
            )
            form = self.get_form()
            form.errors.clear()
            form.add_error(None, LOCKED_OUT_MESSAGE)
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_valid(form)
        user = form.get_user()
        login_throttle.clear_failures(username=user.get_username(), ip_address=client_ip(self.request))
        audit_record(action="auth.signed_in", actor=user, target=user, ip_address=client_ip(self.request))
        return response

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        username = self.request.POST.get("username", "")
        login_throttle.record_failure(username=username, ip_address=client_ip(self.request))
        logger.info("sign-in failed", extra={"ip": client_ip(self.request)})
        audit_record(
            action="auth.sign_in_failed",
            data={"username": username[:150]},
            ip_address=client_ip(self.request),
        )
        return super().form_invalid(form)


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
