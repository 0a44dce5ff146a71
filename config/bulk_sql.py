"""Many rows in one statement with one parameter: the rows as a JSON document (Postgres only).

Django's ``bulk_create`` compiles every field of every row and, with client-side parameter binding (this
project's psycopg setting), psycopg quotes each value in Python: on the hot paths (the webhook store, a
drain batch's messages) that was the top of the profile (docs/performance.md). ``json.dumps`` runs in C,
and Postgres turns the document back into typed rows of the table itself (``jsonb_populate_recordset``
on the table's row type), so each column gets exactly the conversion its type defines.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection, models
from django.db.models.fields.files import FieldFile


def json_value(value: Any) -> Any:
    """A field's Python value as the JSON text Postgres reads back as that column's type."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return "\\x" + bytes(value).hex()  # bytea's hex input format
    if isinstance(value, FieldFile):
        return value.name or ""
    return value


@functools.cache
def _insert_plan(model: type[models.Model]) -> tuple[list[tuple[str, Any]], str]:
    """The model's (column, field) pairs and its INSERT statement, built once per model."""
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    columns = ", ".join(connection.ops.quote_name(str(field.column)) for field in fields)
    table = model._meta.db_table
    statement = (
        # Rows are inserted in the document's order and ids grow as they are: sorted, they pair up.
        f"WITH inserted AS (INSERT INTO {table} ({columns}) "  # noqa: S608 (names from the model)
        f"SELECT {columns} FROM jsonb_populate_recordset(NULL::{table}, %s::jsonb) RETURNING id) "
        "SELECT id FROM inserted ORDER BY id"
    )
    return [(str(field.column), field) for field in fields], statement


def rows_insert(model: type[models.Model], objects: Sequence[models.Model]) -> None:
    """INSERT ``objects`` (new, unsaved) in one statement and set their primary keys, in order."""
    if not objects:
        return
    fields, statement = _insert_plan(model)
    rows = [{column: json_value(field.pre_save(obj, True)) for column, field in fields} for obj in objects]
    with connection.cursor() as cursor:
        cursor.execute(statement, [json.dumps(rows)])
        ids = [row[0] for row in cursor.fetchall()]
    for obj, pk in zip(objects, ids, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = connection.alias
