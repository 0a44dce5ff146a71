"""Fuzzing both webhook endpoints with random and mutated published payloads (hypothesis).

Whatever arrives: never a 500; nothing from an unsigned (or wrongly signed) request is stored or
becomes a message; every correctly signed body is stored byte for byte, and processing it either
succeeds or records a failure on the event — it never raises out of the processor.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inbox.models import Message
from tests.webhooks.conftest import post_meta, post_whapi
from tests.webhooks.samples import FIXTURES
from webhooks.models import WebhookEvent
from webhooks.processor import webhook_event_process

pytestmark = pytest.mark.django_db

SAMPLES = {
    provider: [json.loads(path.read_bytes()) for path in sorted((FIXTURES / provider).glob("*.json"))]
    for provider in ("meta", "whapi")
}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.just(""),
    st.just("wamid.X"),
    st.just("123@s.whatsapp.net"),
    st.just("@g.us"),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, provider: str) -> bytes:
    """A published payload with a few of its nodes deleted or replaced by random JSON."""
    document = json.loads(json.dumps(draw(st.sampled_from(SAMPLES[provider]))))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [p for p in _paths(document) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(json_value)
    return json.dumps(document, ensure_ascii=draw(st.booleans())).encode()


any_body = st.one_of(st.binary(max_size=300), json_value.map(lambda v: json.dumps(v).encode()))


def _assert_stored_and_processable(response: Any, body: bytes, before: int) -> None:
    assert response.status_code in (200, 400), response.status_code
    events = list(WebhookEvent.objects.order_by("-pk")[: WebhookEvent.objects.count() - before])
    assert events, "a signed request was answered but not stored"
    for event in events:
        assert bytes(event.raw_body) == body
        if event.status == WebhookEvent.Status.PENDING:
            outcome = webhook_event_process(event_id=event.pk)
            assert outcome.status in {"processed", "failed", "dead", "skipped"}


@FUZZ
@given(body=st.one_of(mutated("whapi"), any_body))
def test_whapi_signed_fuzz_is_stored_and_never_a_500(whapi_channel, body: bytes) -> None:
    before = WebhookEvent.objects.count()
    response = post_whapi(whapi_channel, body)
    if response.status_code == 401:
        # A mutated channel_id that no longer matches the number's Whapi id is refused, storing nothing.
        assert WebhookEvent.objects.count() == before
        return
    _assert_stored_and_processable(response, body, before)


@FUZZ
@given(body=st.one_of(mutated("meta"), any_body))
def test_meta_signed_fuzz_is_stored_and_never_a_500(meta_channel, body: bytes) -> None:
    before = WebhookEvent.objects.count()
    response = post_meta(meta_channel, body)
    _assert_stored_and_processable(response, body, before)


@FUZZ
@given(body=st.one_of(mutated("whapi"), mutated("meta"), any_body), secret=st.text(max_size=30))
def test_unsigned_or_wrongly_signed_requests_store_nothing_and_create_no_message(
    whapi_channel, meta_channel, body: bytes, secret: str
) -> None:
    events, messages = WebhookEvent.objects.count(), Message.objects.count()
    whapi = post_whapi(whapi_channel, body, secret=secret or None)
    meta = post_meta(meta_channel, body, secret=secret + "-not-the-app-secret")
    assert whapi.status_code == 401 and meta.status_code == 401
    assert WebhookEvent.objects.count() == events and Message.objects.count() == messages
