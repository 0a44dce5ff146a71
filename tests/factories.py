"""Factories for every app's models (factory_boy)."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from channels_app.models import Channel
from inbox.models import Chat, Message
from tenants.models import Membership, Workspace


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}@example.com")
    email = factory.LazyAttribute(lambda u: u.username)
    password = factory.django.Password("password123")


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace

    name = factory.Sequence(lambda n: f"Workspace {n}")
    slug = factory.Sequence(lambda n: f"workspace-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    workspace = factory.SubFactory(WorkspaceFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.AGENT


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Channel

    workspace = factory.SubFactory(WorkspaceFactory)
    provider = Channel.Provider.WHAPI
    phone_number = factory.Sequence(lambda n: f"+1555{n:07d}")
    display_name = factory.Sequence(lambda n: f"Number {n}")
    whapi_channel_id = ""


class ChatFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Chat

    channel = factory.SubFactory(ChannelFactory)
    workspace = factory.LazyAttribute(lambda c: c.channel.workspace)
    wa_chat_id = factory.Sequence(lambda n: f"1999{n:07d}@s.whatsapp.net")
    contact_name = factory.Sequence(lambda n: f"Customer {n}")
    last_message_at = factory.LazyFunction(timezone.now)


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    chat = factory.SubFactory(ChatFactory)
    channel = factory.LazyAttribute(lambda m: m.chat.channel)
    wa_message_id = factory.Sequence(lambda n: f"wamid.test{n}")
    direction = Message.Direction.INBOUND
    type = Message.Type.TEXT
    text = factory.Sequence(lambda n: f"hello {n}")
    status = Message.Status.RECEIVED
