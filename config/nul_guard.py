"""Pages refuse a NUL character in a query parameter or form field with a 400.

Postgres refuses NUL in text, so a NUL typed (or pasted) into any page's input ended as a 500 where the
value reached a query. Django's forms refuse it field by field (``ProhibitNullCharactersValidator``); the
inbox's views read ``request.GET``/``request.POST`` directly, so this checks them once for every page.
The REST API (its serializers answer with field errors) and the webhook endpoints (raw bodies, verified
and stored as received) are left to their own handling.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

OWN_HANDLING = ("/api/", "/webhooks/")


class RejectNulCharactersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(OWN_HANDLING) and _has_nul(request):
            return HttpResponseBadRequest("Bad request: a field contains a NUL character.")
        return self.get_response(request)


def _has_nul(request: HttpRequest) -> bool:
    fields = [request.GET]
    if request.method == "POST":
        fields.append(request.POST)
    return any(
        "\x00" in key or any("\x00" in value for value in values)
        for query in fields
        for key, values in query.lists()
    )
