"""REST API v1, mounted at /api/v1/ (issue 6). Schema at schema/, Swagger UI at docs/, Redoc at redoc/."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from channels_app import api as channels_api
from inbox import api as inbox_api
from outbox import api as outbox_api
from tenants import api as tenants_api

app_name = "api"

urlpatterns = [
    path("channels/", channels_api.ChannelListCreateApi.as_view(), name="channels"),
    path("channels/<uuid:pk>/", channels_api.ChannelDetailApi.as_view(), name="channel"),
    path("channels/<uuid:pk>/pause/", channels_api.ChannelPauseApi.as_view(), name="channel-pause"),
    path("channels/<uuid:pk>/resume/", channels_api.ChannelResumeApi.as_view(), name="channel-resume"),
    path("chats/", inbox_api.ChatListCreateApi.as_view(), name="chats"),
    path("chats/<int:pk>/", inbox_api.ChatDetailApi.as_view(), name="chat"),
    path("chats/<int:pk>/read/", inbox_api.ChatReadApi.as_view(), name="chat-read"),
    path("chats/<int:pk>/messages/", inbox_api.ChatMessagesApi.as_view(), name="chat-messages"),
    path("messages/<int:pk>/", inbox_api.MessageDetailApi.as_view(), name="message"),
    path("members/", tenants_api.MemberListCreateApi.as_view(), name="members"),
    path("members/<int:pk>/", tenants_api.MemberDetailApi.as_view(), name="member"),
    path("subscriptions/", outbox_api.SubscriptionListCreateApi.as_view(), name="subscriptions"),
    path("subscriptions/<int:pk>/", outbox_api.SubscriptionDetailApi.as_view(), name="subscription"),
    path(
        "subscriptions/<int:pk>/rotate-secret/",
        outbox_api.SubscriptionRotateSecretApi.as_view(),
        name="subscription-rotate-secret",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its init script as a file: the site's CSP allows no inline script.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
]
