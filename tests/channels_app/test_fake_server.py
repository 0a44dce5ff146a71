"""The fake provider itself: it records, misbehaves on request, is steerable over HTTP and posts
status callbacks signed as the real providers do."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from channels_app.providers.fake_server import FakeProvider


def post(fake, path, body, token="tok"):
    return requests.post(
        f"{fake.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )


def test_it_answers_both_send_apis_and_records_each_request(fake_provider):
    whapi = post(fake_provider, "/messages/text", {"to": "1@s.whatsapp.net", "body": "hi"})
    meta = post(
        fake_provider, "/v21.0/123/messages", {"messaging_product": "whatsapp", "to": "1", "type": "text"}
    )
    assert whapi.status_code == 201 and whapi.json()["sent"] is True
    assert meta.status_code == 200 and meta.json()["messages"][0]["id"].startswith("wamid.")
    first, second = fake_provider.requests
    assert (first.provider, first.message_id) == ("whapi", whapi.json()["message"]["id"])
    assert (second.provider, second.message_id) == ("meta", meta.json()["messages"][0]["id"])
    assert post(fake_provider, "/nowhere", {}).status_code == 404


def test_rules_apply_the_given_number_of_times_and_only_to_their_token(fake_provider):
    fake_provider.add_rule("rate_limit", retry_after="9", times=2, token="limited")
    assert post(fake_provider, "/messages/text", {"to": "1", "body": "x"}, token="other").status_code == 201
    answers = [
        post(fake_provider, "/messages/text", {"to": "1", "body": "x"}, token="limited") for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [429, 429, 201]
    assert answers[0].headers["Retry-After"] == "9"


def test_it_can_be_steered_over_http_as_the_documented_command_runs_it(fake_provider):
    requests.post(f"{fake_provider.url}/_fake/rules", json={"kind": "meta_error", "code": 131047}, timeout=5)
    answer = post(fake_provider, "/v21.0/123/messages", {"to": "1"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, 131047)
    listed = requests.get(f"{fake_provider.url}/_fake/requests", timeout=5).json()
    assert [r["path"] for r in listed] == ["/v21.0/123/messages"]
    requests.post(f"{fake_provider.url}/_fake/reset", json={}, timeout=5)
    assert fake_provider.requests == []


class Collector(BaseHTTPRequestHandler):
    received: list[tuple[dict, bytes]] = []
    done = threading.Event()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Collector.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if len(Collector.received) >= 3:
            Collector.done.set()

    def log_message(self, *args):
        pass


@pytest.fixture
def collector():
    Collector.received = []
    Collector.done = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/webhooks/"
    server.shutdown()


@pytest.mark.parametrize("provider", ["meta", "whapi"])
def test_it_posts_signed_sent_delivered_read_callbacks(collector, provider):
    fake = FakeProvider().start()
    try:
        fake.add_callbacks(url=collector, provider=provider, secret="s3cret", delay=0.01)
        if provider == "meta":
            answer = post(fake, "/v21.0/555/messages", {"to": "16505551234", "type": "text"})
            message_id = answer.json()["messages"][0]["id"]
        else:
            answer = post(fake, "/messages/text", {"to": "1@s.whatsapp.net", "body": "x"})
            message_id = answer.json()["message"]["id"]
        assert Collector.done.wait(10)
    finally:
        fake.stop()
    statuses = []
    for headers, body in Collector.received:
        if provider == "meta":
            expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
            assert headers["x-hub-signature-256"] == f"sha256={expected}"
            status = json.loads(body)["entry"][0]["changes"][0]["value"]["statuses"][0]
        else:
            assert headers["authorization"] == "Bearer s3cret"
            status = json.loads(body)["statuses"][0]
        assert status["id"] == message_id
        statuses.append(status["status"])
    assert statuses == ["sent", "delivered", "read"]


def _exchange(fake_provider, raw: bytes) -> bytes:
    import socket

    host, port = fake_provider.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_it_reads_pipelined_requests_on_one_connection_and_names_headers_in_any_case(fake_provider):
    body = b'{"to": "4915550001@s.whatsapp.net", "body": "one"}'
    request = (
        b"POST /messages/text HTTP/1.1\r\nHost: x\r\nauthorization: Bearer tok-a\r\n"
        b"CONTENT-TYPE: application/json\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    closing = request.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n").replace(b"tok-a", b"tok-b")
    answer = _exchange(fake_provider, request + closing)

    assert answer.count(b"HTTP/1.1 201") == 2
    sends = fake_provider.sends()
    assert [s.bearer for s in sends] == ["tok-a", "tok-b"]
    assert sends[0].json == {"to": "4915550001@s.whatsapp.net", "body": "one"}
    assert sends[0].headers["content-type"] == "application/json"


def test_a_malformed_request_line_is_answered_400(fake_provider):
    answer = _exchange(fake_provider, b"NONSENSE\r\n\r\n")
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n", 1)[0]
