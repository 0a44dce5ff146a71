from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from channels_app import crypto
from channels_app.models import ChannelToken


class Command(BaseCommand):
    help = (
        "Re-encrypt every channel token from --old-key to --new-key (default: the ENCRYPTION_KEY setting). "
        "Safe to rerun after an interruption: tokens already under the new key are left as they are."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--old-key", required=True)
        parser.add_argument("--new-key", default=None, help="defaults to the current ENCRYPTION_KEY")

    def handle(self, *args: Any, **options: Any) -> None:
        from django.conf import settings

        old_key: str = options["old_key"]
        new_key: str = options["new_key"] or settings.ENCRYPTION_KEY
        if not old_key or not new_key:
            raise CommandError("both the old and the new key are needed")
        rotated = already = 0
        unreadable: list[str] = []
        # One row per transaction, so a crash half-way leaves every row readable by one of the two keys.
        for token_id in ChannelToken.objects.order_by("pk").values_list("pk", flat=True):
            with transaction.atomic():
                token = ChannelToken.objects.select_for_update().get(pk=token_id)
                try:
                    crypto.decrypt(token.encrypted_value, key=new_key)
                    already += 1
                    continue
                except crypto.DecryptionError:
                    pass
                try:
                    plaintext = crypto.decrypt(token.encrypted_value, key=old_key)
                except crypto.DecryptionError:
                    unreadable.append(f"{token.token_type} of channel {token.channel_id}")
                    continue
                token.encrypted_value = crypto.encrypt(plaintext, key=new_key)
                token.save(update_fields=["encrypted_value", "updated_at"])
                rotated += 1
        self.stdout.write(
            json.dumps({"rotated": rotated, "already_rotated": already, "unreadable": len(unreadable)})
        )
        if unreadable:
            raise CommandError("cannot decrypt with either key: " + "; ".join(unreadable))
