from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from config import health, monitoring
from tenants import views as tenant_views

admin.site.site_header = "WhatsApp Inbox admin"
admin.site.site_title = "WhatsApp Inbox admin"
admin.site.index_title = "Workspaces, numbers and people"

urlpatterns = [
    path("", tenant_views.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("monitoring/", monitoring.monitoring_page, name="monitoring"),
    path("monitoring/replay/", monitoring.monitoring_replay, name="monitoring_replay"),
    path("", include("tenants.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("config.api_urls")),
    path("webhooks/", include("webhooks.urls")),
    path("inbox/", include("inbox.urls")),
]
