"""The trigram indexes of migration inbox 0002 match the SQL the ORM writes for the inbox search.

Whether the planner picks them depends on table sizes (at 1M messages it does: docs/performance.md); what
a test can pin down is that they exist and fit the search predicates (``UPPER(col::text) LIKE``), which
an index on a slightly different expression would silently not.
"""

from __future__ import annotations

import pytest
from django.db import connection

from inbox.models import Chat, Message

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("queryset", "index"),
    [
        (lambda: Message.objects.filter(text__icontains="refund please"), "message_text_trgm"),
        (lambda: Chat.objects.filter(contact_name__icontains="ana cust"), "chat_contact_name_trgm"),
    ],
)
def test_the_search_predicates_can_be_answered_from_the_trigram_indexes(queryset, index):
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # tiny test tables: make the index the only way
    plan = queryset().explain()
    assert index in plan, plan
