from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import before_task_publish, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# The correlation id of the request (or webhook event) that queued a task travels with it.
@before_task_publish.connect
def _attach_correlation_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    from config.request_context import CELERY_HEADER, current_request_id

    request_id = current_request_id()
    if headers is not None and request_id and CELERY_HEADER not in headers:
        headers[CELERY_HEADER] = request_id


@task_prerun.connect
def _bind_correlation_id(task: Any = None, **_: Any) -> None:
    from config.request_context import CELERY_HEADER, request_id_var

    request_id = getattr(task.request, CELERY_HEADER, None) if task is not None else None
    if request_id:
        request_id_var.set(request_id)
