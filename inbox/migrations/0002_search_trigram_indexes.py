"""Trigram indexes for the inbox search (``icontains`` on message text and contact names), Postgres only.

Created ``CONCURRENTLY`` (so not in a transaction) to keep a live inbox writable while they build. They
are not in the models' Meta: SQLite (the embedded mode) has no GIN or pg_trgm, and the ORM needs no
state for an index it never names.
"""

from django.db import migrations

INDEXES = {
    "message_text_trgm": "inbox_message USING gin (UPPER(text) gin_trgm_ops)",
    "chat_contact_name_trgm": "inbox_chat USING gin (UPPER(contact_name) gin_trgm_ops)",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, definition in INDEXES.items():
            cursor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {definition}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name in INDEXES:
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("inbox", "0001_initial")]

    operations = [migrations.RunPython(create, drop, atomic=False)]
