"""A fake WhatsApp provider over real HTTP, speaking both send APIs, for tests, benchmarks and demos.

    python -m channels_app.providers.fake_server --port 8900

Point a channel's ``api_base_url`` at it (``http://127.0.0.1:8900``). It answers:

- Whapi: ``POST /messages/{text,image,video,audio,voice,document}`` → 201 ``{"sent": true, "message": {...}}``
- Meta: ``POST /{version}/{phone_number_id}/messages`` → 200 ``{"messages": [{"id": "wamid..."}]}`` and
  ``POST /{version}/{phone_number_id}/media`` (multipart) → 200 ``{"id": ...}``

It records every request and can be told to misbehave, in process (``FakeProvider.add_rule``) or over
HTTP (``POST /_fake/rules`` with the same fields as JSON):

- ``rate_limit``: 429 with ``Retry-After`` (Meta body code 130429, or ``code`` given)
- ``server_error``: 5xx (``status``, default 500)
- ``meta_error``: a Meta error body with ``code`` and ``status`` (e.g. 131047 with 400)
- ``whapi_error``: a Whapi error body with ``status``
- ``timeout``: answer only after ``delay`` seconds (longer than the client's timeout)
- ``disconnect``: close the connection without answering
- ``slow``: answer normally after ``delay`` seconds
- ``hold``: keep the request open until ``POST /_fake/release`` (or ``release_held()``), then answer

A rule applies ``times`` times (-1: until reset), optionally only to requests carrying bearer ``token``,
whose path contains ``path_contains`` or whose raw body contains ``body_contains``. ``GET /_fake/requests`` lists what was received; ``POST /_fake/reset``
forgets requests and rules. ``POST /_fake/callbacks`` ``{"url", "provider": "meta"|"whapi", "secret",
"statuses": ["sent", "delivered", "read"], "delay": 0.2}`` makes it post status webhooks for every
accepted message, signed as the real provider would (Meta: ``X-Hub-Signature-256`` HMAC of the raw body
with the app secret; Whapi: ``Authorization: Bearer <webhook secret>``).
"""

from __future__ import annotations

import argparse
import contextlib
import email.parser
import email.policy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

WHAPI_PATH = re.compile(r"^/messages/(?P<kind>text|image|video|audio|voice|document)/?$")
META_PATH = re.compile(r"^/(?P<version>v[\d.]+)/(?P<number>[^/]+)/(?P<what>messages|media)/?$")
WHAPI_STATUS_CODES = {"sent": 2, "delivered": 3, "read": 4, "failed": 0}


@dataclass
class ReceivedRequest:
    seq: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    provider: str  # whapi | meta | control | unknown
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    response_status: int | None = None
    message_id: str = ""
    received_at: float = 0.0

    @property
    def bearer(self) -> str:
        value = self.headers.get("authorization", "")
        return value[7:] if value.lower().startswith("bearer ") else ""

    @property
    def is_message_send(self) -> bool:
        return self.provider in {"whapi", "meta"} and not self.path.rstrip("/").endswith("/media")

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data["body"] = self.body[:2000].decode("utf-8", errors="replace")
        for meta in data["files"].values():
            meta.pop("content", None)
        return data


@dataclass
class Rule:
    kind: str
    times: int = 1
    token: str = ""
    path_contains: str = ""
    body_contains: str = ""
    status: int | None = None
    code: int | None = None
    message: str = ""
    details: str = ""
    retry_after: str | None = None
    delay: float = 0.0

    def matches(self, request: ReceivedRequest) -> bool:
        if self.times == 0:
            return False
        if self.token and request.bearer != self.token:
            return False
        if self.body_contains and self.body_contains.encode() not in request.body:
            return False
        return not (self.path_contains and self.path_contains not in request.path)


@dataclass
class CallbackConfig:
    url: str
    provider: str  # meta | whapi
    secret: str = ""
    statuses: list[str] = field(default_factory=lambda: ["sent", "delivered", "read"])
    delay: float = 0.2
    channel_id: str = "FAKE-CHANNEL"
    token: str = ""  # only for sends carrying this bearer token


class FakeProvider:
    """The server and its state. Safe to use from the test thread while handler threads run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._rules: list[Rule] = []
        self._callbacks: list[CallbackConfig] = []
        self._seq = itertools.count(1)
        self._release = threading.Event()
        self._stopping = threading.Event()
        # Called in the handler thread after a send is accepted and before the answer goes out: tests use
        # it to deliver a webhook that beats the send response.
        self.before_respond: Callable[[ReceivedRequest, str], None] | None = None
        self.server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeProvider:
        provider = self

        class Handler(FakeProviderHandler):
            fake = provider

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="fake-provider", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{port}"

    # ---------------------------------------------------------------- control

    def add_rule(self, kind: str, **options: Any) -> Rule:
        rule = Rule(kind=kind, **options)
        with self._lock:
            self._rules.append(rule)
        return rule

    def add_callbacks(self, **options: Any) -> CallbackConfig:
        config = CallbackConfig(**options)
        with self._lock:
            self._callbacks.append(config)
        return config

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._rules.clear()
            self._callbacks.clear()
        self._release.clear()

    def release_held(self) -> None:
        self._release.set()

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def sends(self) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.is_message_send]

    # ---------------------------------------------------------------- internals

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            request.seq = next(self._seq)
            self._requests.append(request)

    def _take_rule(self, request: ReceivedRequest) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(request):
                    if rule.times > 0:
                        rule.times -= 1
                    return rule
        return None

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _callbacks_for(self, request: ReceivedRequest) -> list[CallbackConfig]:
        with self._lock:
            return [c for c in self._callbacks if not c.token or c.token == request.bearer]

    def _post_callbacks(self, request: ReceivedRequest, message_id: str, recipient: str, number: str) -> None:
        for config in self._callbacks_for(request):
            threading.Thread(
                target=_deliver_callbacks, args=(config, message_id, recipient, number), daemon=True
            ).start()


def _deliver_callbacks(config: CallbackConfig, message_id: str, recipient: str, number: str) -> None:
    session = requests.Session()
    session.trust_env = False
    for status in config.statuses:
        time.sleep(config.delay)
        now = str(int(time.time()))
        if config.provider == "meta":
            payload: dict[str, Any] = {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": "fake-waba",
                        "changes": [
                            {
                                "field": "messages",
                                "value": {
                                    "messaging_product": "whatsapp",
                                    "metadata": {"display_phone_number": "", "phone_number_id": number},
                                    "statuses": [
                                        {
                                            "id": message_id,
                                            "status": status,
                                            "timestamp": now,
                                            "recipient_id": recipient,
                                        }
                                    ],
                                },
                            }
                        ],
                    }
                ],
            }
            body = json.dumps(payload, separators=(",", ":")).encode()
            signature = hmac.new(config.secret.encode(), body, hashlib.sha256).hexdigest()
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={signature}"}
        else:
            payload = {
                "statuses": [
                    {
                        "id": message_id,
                        "code": WHAPI_STATUS_CODES.get(status, 0),
                        "status": status,
                        "recipient_id": recipient,
                        "timestamp": now,
                    }
                ],
                "event": {"type": "statuses", "event": "post"},
                "channel_id": config.channel_id,
            }
            body = json.dumps(payload, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {config.secret}"}
        # The real providers retry a failed callback; the fake one just moves on.
        with contextlib.suppress(requests.RequestException):
            session.post(config.url, data=body, headers=headers, timeout=10)


class _Headers(dict[str, str]):
    """Request headers by lower-case name (what the handler needs of ``http.client.HTTPMessage``)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)


MAX_HEADER_LINE = 65536
MAX_HEADERS = 100


class FakeProviderHandler(BaseHTTPRequestHandler):
    fake: FakeProvider
    raw_requestline: bytes  # set by handle_one_request before parse_request
    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs
    # Headers and body go out in two writes; without TCP_NODELAY Nagle + delayed ACK add ~40 ms per call.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks read .requests
        pass

    def parse_request(self) -> bool:
        """The request line and headers, read plainly. The standard library's version runs every
        request's headers through the email package's feed parser: half of this server's CPU per call,
        taken from the code the benchmarks measure beside it on the same cores."""
        self.command = ""
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.request_version = "HTTP/1.1"  # answer with a status line, not HTTP/0.9's bare body
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request line {self.requestline!r}")
            return False
        self.command, self.path, self.request_version = words
        headers = _Headers()
        while True:
            line = self.rfile.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE or len(headers) > MAX_HEADERS:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("iso-8859-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        return True

    def _read(self) -> ReceivedRequest:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        provider = "unknown"
        if path.startswith("/_fake/"):
            provider = "control"
        elif WHAPI_PATH.match(path):
            provider = "whapi"
        elif META_PATH.match(path):
            provider = "meta"
        request = ReceivedRequest(
            seq=0,
            method=self.command,
            path=path,
            headers=dict(self.headers.items()),
            body=body,
            provider=provider,
            received_at=time.time(),
        )
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("application/json") and body:
            try:
                request.json = json.loads(body)
            except ValueError:
                request.json = None
        elif content_type.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + body
            )
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                filename = part.get_filename()
                payload = part.get_payload(decode=True)
                content = payload if isinstance(payload, bytes) else b""
                if filename is not None:
                    request.files[str(name)] = {
                        "filename": filename,
                        "content_type": part.get_content_type(),
                        "size": len(content),
                        "content": content,
                    }
                else:
                    request.form[str(name)] = content.decode("utf-8", errors="replace")
        return request

    def _answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/_fake/requests":
            self._answer(200, [r.summary() for r in self.fake.requests])
            return
        self._answer(404, {"error": {"code": 404, "message": "not found"}})

    def do_POST(self) -> None:
        request = self._read()
        if request.provider == "control":
            self._control(request)
            return
        self.fake._record(request)
        if request.provider == "unknown":
            request.response_status = 404
            self._answer(404, {"error": {"code": 404, "message": f"no such endpoint {request.path}"}})
            return
        rule = self.fake._take_rule(request)
        try:
            if rule is not None and self._misbehave(rule, request):
                return
            self._accept(request)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout): what it sent is recorded, the answer goes nowhere.
            self.close_connection = True

    def _control(self, request: ReceivedRequest) -> None:
        data = request.json if isinstance(request.json, dict) else {}
        if request.path == "/_fake/reset":
            self.fake.reset()
        elif request.path == "/_fake/rules":
            self.fake.add_rule(**data)
        elif request.path == "/_fake/callbacks":
            self.fake.add_callbacks(**data)
        elif request.path == "/_fake/release":
            self.fake.release_held()
        else:
            self._answer(404, {"error": "unknown control endpoint"})
            return
        self._answer(200, {"ok": True})

    def _misbehave(self, rule: Rule, request: ReceivedRequest) -> bool:
        """Answer as the rule says; False when the request should then be accepted normally."""
        meta = request.provider == "meta"
        if rule.kind in {"slow", "hold"}:
            if rule.kind == "hold":
                self.fake._release.wait()
            else:
                self.fake._wait(rule.delay)
            return False
        if rule.kind == "timeout":
            self.fake._wait(rule.delay or 30.0)
            return False
        if rule.kind == "disconnect":
            request.response_status = 0
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if rule.kind == "rate_limit":
            status = rule.status or 429
            headers = {"Retry-After": rule.retry_after} if rule.retry_after is not None else {}
            if meta:
                body = _meta_error_body(
                    rule.code or 130429,
                    rule.message or "Rate limit hit",
                    rule.details or "Cloud API message throughput has been reached.",
                )
            else:
                body = {
                    "error": {"code": rule.code or status, "message": rule.message or "Too many requests"}
                }
            request.response_status = status
            self._answer(status, body, headers)
            return True
        if rule.kind == "server_error":
            status = rule.status or 500
            request.response_status = status
            if meta:
                self._answer(
                    status, _meta_error_body(rule.code or 1, rule.message or "An unknown error occurred", "")
                )
            else:
                self._answer(status, {"error": {"code": status, "message": rule.message or "Internal error"}})
            return True
        if rule.kind == "meta_error":
            status = rule.status or 400
            request.response_status = status
            self._answer(
                status, _meta_error_body(rule.code or 100, rule.message or "Invalid parameter", rule.details)
            )
            return True
        if rule.kind == "whapi_error":
            status = rule.status or 400
            request.response_status = status
            body = {
                "error": {"code": rule.code or status, "message": rule.message or "Wrong request parameters"}
            }
            if rule.details:
                body["error"]["details"] = rule.details
            self._answer(status, body)
            return True
        raise ValueError(f"unknown fake rule {rule.kind!r}")

    def _accept(self, request: ReceivedRequest) -> None:
        if request.provider == "whapi":
            match = WHAPI_PATH.match(request.path)
            assert match is not None
            body = request.json if isinstance(request.json, dict) else {}
            message_id = f"{secrets.token_hex(6)}-fake{request.seq}"
            recipient = str(body.get("to", ""))
            answer = {
                "sent": True,
                "message": {
                    "id": message_id,
                    "from_me": True,
                    "type": match["kind"],
                    "chat_id": recipient,
                    "timestamp": int(time.time()),
                    "source": "api",
                    "status": "pending",
                },
            }
            status, number = 201, ""
        else:
            match = META_PATH.match(request.path)
            assert match is not None
            number = match["number"]
            if match["what"] == "media":
                request.response_status = 200
                request.message_id = f"fake-media-{request.seq}"
                self._answer(200, {"id": request.message_id})
                return
            body = request.json if isinstance(request.json, dict) else {}
            recipient = str(body.get("to", ""))
            message_id = f"wamid.FAKE{secrets.token_hex(12)}"
            answer = {
                "messaging_product": "whatsapp",
                "contacts": [{"input": recipient, "wa_id": recipient.lstrip("+")}],
                "messages": [{"id": message_id}],
            }
            status = 200
        request.message_id = message_id
        request.response_status = status
        if self.fake.before_respond is not None:
            self.fake.before_respond(request, message_id)
        self._answer(status, answer)
        self.fake._post_callbacks(request, message_id, recipient, number)


def _meta_error_body(code: int, message: str, details: str) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": f"(#{code}) {message}",
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": f"Fake{secrets.token_hex(6)}",
    }
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return {"error": error}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Whapi/Meta send API for tests and benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    args = parser.parse_args(argv)
    fake = FakeProvider().start(args.host, args.port)
    print(
        f"fake provider listening on {fake.url} (Whapi: /messages/..., Meta: /<version>/<id>/messages)",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
