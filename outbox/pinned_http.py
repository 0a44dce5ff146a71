"""HTTP requests that go to an address already checked, never to a second DNS answer.

Screening a URL by resolving its name and then letting ``requests`` connect leaves a gap: the HTTP
client resolves the name again, and a DNS server that answers a public address to the check and an
internal one to the connection (DNS rebinding) gets the request into our network. Here the caller
resolves once, judges the addresses, and hands the ones it accepts to ``pinned_post``, which connects
to one of them (the next only when the previous could not be connected to, as ``socket.create_connection``
would have done) while the request still reads as one for the URL's name:

- the pool is opened to the address, so urllib3 looks nothing up (an address is its own answer);
- ``Host:`` is the URL's ``host[:port]``, set here because urllib3 would otherwise name the address;
- for https, urllib3's ``server_hostname`` (TLS SNI) and ``assert_hostname`` (the certificate's name
  check) are the URL's host, with the usual certificate verification: the address is only where to
  connect, the certificate must still be the name's.

Proxies from the environment are not used: a proxy would resolve the name itself.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.exceptions import InvalidURL
from requests.models import PreparedRequest
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError


class PinnedAddressAdapter(HTTPAdapter):
    """A transport adapter whose every connection goes to ``address``, whatever the URL's host."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def get_connection_with_tls_context(
        self, request: PreparedRequest, verify: Any, proxies: Any = None, cert: Any = None
    ) -> HTTPConnectionPool:
        try:
            host_params, tls = self.build_connection_pool_key_attributes(request, verify, cert)
        except ValueError as error:
            raise InvalidURL(error, request=request) from None
        pool_kwargs: dict[str, Any] = {**tls}
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = host_params["host"]
            pool_kwargs["assert_hostname"] = host_params["host"]
        return self.poolmanager.connection_from_host(
            self.address, host_params["port"], host_params["scheme"], pool_kwargs=pool_kwargs
        )

    def add_headers(self, request: PreparedRequest, **kwargs: Any) -> None:
        request.headers["Host"] = host_header(str(request.url))

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies={})


def host_header(url: str) -> str:
    """What an HTTP client names as ``Host`` for ``url``: its host, and its port unless the scheme's own."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default_port = 443 if parts.scheme == "https" else 80
    return host if parts.port in (None, default_port) else f"{host}:{parts.port}"


def _not_connected(error: requests.ConnectionError) -> bool:
    """The request never left: the TCP connection itself was refused, unreachable or timed out."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0] if error.args else None, "reason", None)
    return isinstance(reason, ConnectTimeoutError)  # urllib3's NewConnectionError is one too


def _post_via(address: str, url: str, **kwargs: Any) -> requests.Response:
    with requests.Session() as session:
        adapter = PinnedAddressAdapter(address)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session.post(url, **kwargs)


def pinned_post(url: str, addresses: list[str], **kwargs: Any) -> requests.Response:
    """``requests.post(url, **kwargs)``, connecting to ``addresses`` in turn instead of resolving the host.

    Only a failure to connect moves on to the next address; any other error, or the last address's,
    is raised as ``requests`` raises it.
    """
    if not addresses:
        raise ValueError("no address to connect to")
    *others, last = addresses
    for address in others:
        try:
            return _post_via(address, url, **kwargs)
        except requests.ConnectionError as error:
            if not _not_connected(error):
                raise
    return _post_via(last, url, **kwargs)
