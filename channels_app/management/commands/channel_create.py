from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from channels_app.models import Channel, ChannelToken
from channels_app.selectors import channel_webhook_url
from channels_app.services import ChannelError, channel_create
from tenants.management.lookup import workspace_by_id


class Command(BaseCommand):
    help = "Connect a WhatsApp number; prints {channel_id, webhook_url} as JSON. Secrets are never printed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True)
        parser.add_argument("--provider", required=True, choices=Channel.Provider.values)
        parser.add_argument("--name", required=True)
        parser.add_argument("--phone", required=True)
        parser.add_argument("--phone-number-id", default="")
        parser.add_argument("--whapi-channel-id", default="")
        parser.add_argument("--api-base-url", default="")
        parser.add_argument("--api-token", default="")
        parser.add_argument("--app-secret", default="")
        parser.add_argument("--verify-token", default="")
        parser.add_argument("--webhook-secret", default="")
        parser.add_argument("--rate-limit", type=float, default=None, help="messages per second")

    def handle(self, *args: Any, **options: Any) -> None:
        workspace = workspace_by_id(options["workspace"])
        tokens: dict[str, str] = {
            ChannelToken.TokenType.API_TOKEN: options["api_token"],
            ChannelToken.TokenType.APP_SECRET: options["app_secret"],
            ChannelToken.TokenType.VERIFY_TOKEN: options["verify_token"],
            ChannelToken.TokenType.WEBHOOK_SECRET: options["webhook_secret"],
        }
        try:
            with transaction.atomic(durable=True):
                channel = channel_create(
                    workspace=workspace,
                    provider=options["provider"],
                    display_name=options["name"],
                    phone_number=options["phone"],
                    meta_phone_number_id=options["phone_number_id"],
                    whapi_channel_id=options["whapi_channel_id"],
                    api_base_url=options["api_base_url"],
                    rate_limit_per_second=options["rate_limit"],
                    tokens=tokens,
                )
        except ChannelError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            json.dumps({"channel_id": str(channel.pk), "webhook_url": channel_webhook_url(channel)})
        )
