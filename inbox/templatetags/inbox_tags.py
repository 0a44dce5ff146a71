"""Formatting for the inbox templates: sort keys for keyed lists, day labels, list times, reactions."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone
from django.utils.formats import date_format

register = template.Library()

# Keys compare as strings in the browser (static/js/inbox.js inserts rows in key order), so every
# part is fixed-width: a local timestamp with microseconds, then the zero-padded primary key.
_STAMP = "%Y-%m-%dT%H:%M:%S.%f"


@register.filter
def message_sort_key(message: Any) -> str:
    return f"{timezone.localtime(message.sort_at).strftime(_STAMP)}-{message.pk:015d}"


@register.filter
def day_key(value: datetime | None) -> str:
    """The day a message belongs to; it sorts before every message key of that day."""
    if value is None:
        return ""
    return timezone.localtime(value).strftime("%Y-%m-%d")


@register.filter
def chat_sort_key(chat: Any) -> str:
    # Chats without a message sort first, as Postgres puts NULLs first in DESC order.
    if chat.last_message_at is None:
        return f"~-{chat.pk:015d}"
    return f"{timezone.localtime(chat.last_message_at).strftime(_STAMP)}-{chat.pk:015d}"


@register.filter
def day_label(value: datetime | None) -> str:
    if value is None:
        return ""
    day = timezone.localtime(value).date()
    today = timezone.localdate()
    if day == today:
        return "Today"
    if day == today - timedelta(days=1):
        return "Yesterday"
    if today - day < timedelta(days=7):
        return date_format(day, "l")
    return date_format(day, "j F Y" if day.year != today.year else "j F")


@register.filter
def list_time(value: datetime | None) -> str:
    """WhatsApp-style: a time today, 'Yesterday', a weekday this week, else a short date."""
    if value is None:
        return ""
    local = timezone.localtime(value)
    today = timezone.localdate()
    if local.date() == today:
        return local.strftime("%H:%M")
    if local.date() == today - timedelta(days=1):
        return "Yesterday"
    if today - local.date() < timedelta(days=7):
        return date_format(local, "D")
    return date_format(local, "d/m/y")


@register.filter
def clock(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%H:%M") if value else ""


@register.filter
def reaction_summary(message: Any) -> list[tuple[str, int]]:
    """[(emoji, how many)] from the prefetched reactions, most used first."""
    counts = Counter(r.emoji for r in message.reactions.all() if r.emoji)
    return counts.most_common()


@register.filter
def initial(value: str) -> str:
    for ch in value or "":
        if ch.isalnum():
            return ch.upper()
    return "#"


@register.filter
def media_href(message: Any) -> str:
    if message.media_file:
        return str(message.media_file.url)
    return str(message.media_url or "")


@register.filter
def filesize(value: int | None) -> str:
    if not value:
        return ""
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""
