from __future__ import annotations

from django.urls import path

from webhooks import views

app_name = "webhooks"

urlpatterns = [
    path("whapi/<uuid:channel_id>/", views.whapi_webhook, name="whapi"),
    path("meta/", views.meta_app_webhook, name="meta-app"),
    path("meta/<uuid:channel_id>/", views.meta_channel_webhook, name="meta"),
    path("sandbox/<uuid:channel_id>/", views.sandbox_webhook, name="sandbox"),
]
