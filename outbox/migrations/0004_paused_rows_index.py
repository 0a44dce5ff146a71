"""A partial index on parked (``paused``) outbox rows: every drain looks for them a few times a second.

Built ``CONCURRENTLY`` on Postgres (not in a transaction), so a live outbox keeps taking writes while it
builds; the model state gets the same index as ``AddIndex`` would give it.
"""

from django.db import migrations, models

INDEX = models.Index(fields=["channel"], name="outbox_paused", condition=models.Q(status="paused"))


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS outbox_paused "
                "ON outbox_outboxmessage (channel_id) WHERE status = 'paused'"
            )
    else:
        schema_editor.add_index(apps.get_model("outbox", "OutboxMessage"), INDEX)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("DROP INDEX CONCURRENTLY IF EXISTS outbox_paused")
    else:
        schema_editor.remove_index(apps.get_model("outbox", "OutboxMessage"), INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0003_claim_order_index")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(create, drop, atomic=False)],
            state_operations=[migrations.AddIndex(model_name="outboxmessage", index=INDEX)],
        )
    ]
