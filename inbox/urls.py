from __future__ import annotations

from django.urls import path

from inbox import views

app_name = "inbox"

urlpatterns = [
    path("", views.inbox, name="index"),
    path("chats/", views.chat_list_page, name="chat_list"),
    path("chats/start/", views.start, name="start"),
    path("chats/<int:chat_id>/", views.conversation, name="chat"),
    path("chats/<int:chat_id>/messages/", views.older_messages, name="older_messages"),
    path("chats/<int:chat_id>/send/", views.send, name="send"),
    path("chats/<int:chat_id>/assign/", views.assign, name="assign"),
    path("chats/<int:chat_id>/status/", views.set_status, name="status"),
    path("chats/<int:chat_id>/read/", views.mark_read, name="read"),
    path("messages/<int:message_id>/retry/", views.retry, name="retry"),
    path("channels/<uuid:channel_id>/simulate/", views.simulate, name="simulate"),
]
