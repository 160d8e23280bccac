"""DNS rebinding: the address that passed the SSRF check is the address connected to.

A real local HTTP(S) server stands in for "the private network"; host names ending in `.test` are
answered by a patched `socket.getaddrinfo` (every other name resolves as usual), whose answers change
between calls as a rebinding DNS server's would."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import ipaddress
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from crm.integrations.ssrf import UrlNotAllowed, guarded_client, request_guard

PUBLIC = "93.184.216.34"  # a public address (outside this machine)


def _port(offset: int) -> int:
    """A port from `CRM_TEST_PORT_BASE` when set (parallel runs keep to their ranges), else a free one."""
    base = os.environ.get("CRM_TEST_PORT_BASE")
    return int(base) + offset if base else 0


@dataclass
class Server:
    port: int
    hosts: list[str] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    redirect_to: str | None = None


@contextlib.contextmanager
def local_server(offset: int, tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    """A real HTTP(S) server on 127.0.0.1 that records the Host header (and SNI) of each request."""
    state = Server(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep connections alive

        def do_GET(self) -> None:
            state.hosts.append(self.headers.get("Host", ""))
            if state.redirect_to and self.path == "/start":
                self.send_response(302)
                self.send_header("Location", state.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"inside"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", _port(offset)), Handler)
    if tls is not None:

        def remember(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
            state.sni.append(name)

        tls.sni_callback = remember  # type: ignore[assignment]
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


class Rebinder:
    """`socket.getaddrinfo` for `*.test` names: each name answers from its list, one entry per call
    (the last one repeats)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: dict[str, list[str]] = {}
        self.calls: dict[str, int] = {}
        original = socket.getaddrinfo

        def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else host
            if isinstance(name, str) and name.endswith(".test"):
                n = self.calls.get(name, 0)
                self.calls[name] = n + 1
                answers = self.answers[name]
                ip = answers[min(n, len(answers) - 1)]
                family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
                return [(family, socket.SOCK_STREAM, 6, "", (ip, int(port or 0)))]
            return original(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Rebinder:
    return Rebinder(monkeypatch)


class TestRebinding:
    async def test_public_then_private_never_reaches_the_private_address(self, dns: Rebinder) -> None:
        with local_server(10) as inside:
            dns.answers["rebind.test"] = [PUBLIC, "127.0.0.1"]
            url = f"http://rebind.test:{inside.port}/secret"

            # The fault, reproduced: check one answer, connect with the next.
            async with httpx.AsyncClient(
                event_hooks={"request": [request_guard(allow_private=False)]}, trust_env=False
            ) as unpinned:
                leaked = await unpinned.get(url)
            assert leaked.status_code == 200
            assert leaked.text == "inside"
            assert dns.calls["rebind.test"] == 2
            assert inside.hosts == [f"rebind.test:{inside.port}"]

            # Pinned: one lookup; the connection goes to the checked public address (whatever answers
            # there, or nothing), never to the private one.
            dns.calls.clear()
            inside.hosts.clear()
            async with guarded_client(allow_private=False, timeout=httpx.Timeout(5, connect=2)) as pinned:
                try:
                    outside = await pinned.get(url)
                except httpx.TransportError:
                    pass
                else:
                    assert outside.text != "inside"
            assert dns.calls["rebind.test"] == 1
            assert inside.hosts == []

    async def test_the_connection_uses_the_checked_answer(self, dns: Rebinder) -> None:
        with local_server(11) as inside:
            # 127.0.0.2 has no server: a second lookup would fail to connect.
            dns.answers["pinned.test"] = ["127.0.0.1", "127.0.0.2"]

            async with guarded_client(allow_private=True, timeout=5) as pinned:
                first = await pinned.get(f"http://pinned.test:{inside.port}/a")
                second = await pinned.get(f"http://pinned.test:{inside.port}/b")  # the kept connection

            assert first.status_code == second.status_code == 200
            assert first.text == "inside"
            assert dns.calls["pinned.test"] == 1
            assert inside.hosts == [f"pinned.test:{inside.port}"] * 2  # the Host header keeps the name

    async def test_a_private_answer_is_refused(self, dns: Rebinder) -> None:
        with local_server(12) as inside:
            dns.answers["private.test"] = ["127.0.0.1"]

            async with guarded_client(allow_private=False, timeout=5) as pinned:
                with pytest.raises(UrlNotAllowed, match="loopback"):
                    await pinned.get(f"http://private.test:{inside.port}/")

            assert inside.hosts == []

    async def test_a_redirect_is_checked_and_pinned_too(self, dns: Rebinder) -> None:
        with local_server(13) as inside:
            dns.answers["start.test"] = ["127.0.0.1"]
            dns.answers["metadata.test"] = [
                "169.254.169.254"
            ]  # link-local: refused even when private is allowed
            inside.redirect_to = f"http://metadata.test:{inside.port}/latest"

            async with guarded_client(allow_private=True, timeout=5, follow_redirects=True) as pinned:
                with pytest.raises(UrlNotAllowed, match="link-local"):
                    await pinned.get(f"http://start.test:{inside.port}/start")

            assert inside.hosts == [f"start.test:{inside.port}"]
            assert dns.calls["metadata.test"] == 1


def _certificate(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for `name`: the server's context and a client context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


class TestTls:
    async def test_sni_and_certificate_are_checked_against_the_name(
        self, dns: Rebinder, tmp_path: Path
    ) -> None:
        server_tls, client_tls = _certificate(tmp_path, "secure.test")
        with local_server(14, tls=server_tls) as inside:
            dns.answers["secure.test"] = ["127.0.0.1"]
            dns.answers["other.test"] = ["127.0.0.1"]

            async with guarded_client(allow_private=True, verify=client_tls, timeout=5) as pinned:
                ok = await pinned.get(f"https://secure.test:{inside.port}/")
                # Same address, another name: the certificate does not match it.
                with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|match"):
                    await pinned.get(f"https://other.test:{inside.port}/")

            assert ok.status_code == 200
            assert ok.text == "inside"
            assert inside.sni[0] == "secure.test"
            assert inside.hosts == [f"secure.test:{inside.port}"]
