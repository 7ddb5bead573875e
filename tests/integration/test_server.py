"""The loopback server: a real client gets the same answers as under MockTransport."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from pimsync.testing.fake_pim import DEFAULT_PASSWORD, DEFAULT_SECRET, FakePim
from pimsync.testing.server import DropConnection, _make_server, serve

API = "/api/rest/v1"


def login(client: httpx.Client) -> None:
    body = {"grant_type": "password", "username": "pimsync", "password": DEFAULT_PASSWORD}
    answer = client.post("/api/oauth/v1/token", json=body, auth=("pimsync", DEFAULT_SECRET))
    client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"


def walk(client: httpx.Client, url: str) -> list[bytes]:
    """Every page body, following `_links.next`."""
    bodies = []
    while True:
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        bodies.append(answer.content)
        links = answer.json()["_links"]
        if "next" not in links:
            return bodies
        url = links["next"]["href"]


def test_real_client_gets_the_same_answers() -> None:
    pim = FakePim(products=450, seed=7)
    pim.clock.freeze()
    first = f"{API}/products-uuid?pagination_type=search_after&limit=100&locales=en_US"
    with serve(pim) as base, httpx.Client(base_url=base) as client:
        assert base.startswith("http://127.0.0.1:")
        login(client)
        over_socket = walk(client, first)
        media = client.get(f"{API}/media-files", params={"limit": 1}).json()["_embedded"]["items"]
        download = client.get(media[0]["_links"]["download"]["href"])
    with httpx.Client(transport=httpx.MockTransport(pim), base_url="http://pim.test") as mocked:
        login(mocked)
        in_memory = walk(mocked, first)
    assert len(over_socket) == 5
    # Links are absolute and point at whichever host answered.
    assert [b.replace(base.encode(), b"http://pim.test") for b in over_socket] == in_memory
    assert download.headers["Content-Type"] == "image/jpeg"
    assert download.headers["Content-Length"] == str(len(download.content)) == str(media[0]["size"])


def test_writes_and_empty_answers_keep_the_connection_usable() -> None:
    pim = FakePim(products=20)
    uuid = pim.catalog.uuid(4)
    name = [{"locale": "en_US", "scope": None, "data": "Over the wire"}]
    with serve(pim) as base, httpx.Client(base_url=base) as client:
        login(client)
        patched = client.patch(f"{API}/products-uuid/{uuid}", json={"values": {"name": name}})
        assert patched.status_code == 204 and patched.content == b""
        # A chunked request body (no Content-Length) is read too.
        chunks = iter(
            [b'{"values": {"ean": [{"locale": null, "scope": null, ', b'"data": null}]}}']
        )
        headers = {"Content-Type": "application/json"}
        chunked = client.patch(f"{API}/products-uuid/{uuid}", content=chunks, headers=headers)
        assert chunked.status_code == 204
        product = client.get(f"{API}/products-uuid/{uuid}").json()
    assert product["values"]["name"][0] == name[0] and "ean" not in product["values"]
    assert pim.request_counts["PATCH /api/rest/v1/products-uuid/{code}"] == 2


def test_dropped_connection_gives_a_transport_error() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/drop":
            raise DropConnection
        return httpx.Response(200, json={"path": request.url.path})

    with serve(handler) as base, httpx.Client(base_url=base) as client:
        assert client.get("/before").json() == {"path": "/before"}
        with pytest.raises(httpx.TransportError):
            client.get("/drop")
        assert client.get("/after").json() == {"path": "/after"}
    assert calls == ["/before", "/drop", "/after"]


@pytest.mark.parametrize(
    "head",
    [
        b"POST /media HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"a" * 40,
        b"POST /media HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + b"a" * 40,
        b"POST /media HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6",
    ],
    ids=["content-length", "chunked", "chunk-size"],
)
def test_a_client_gone_before_its_body_is_complete_never_reaches_the_handler(head: bytes) -> None:
    # A run killed while uploading: a web server does not hand a truncated write to Magento.
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.content)
        return httpx.Response(201)

    with serve(handler) as base, httpx.Client(base_url=base) as client:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(head)
            sock.shutdown(socket.SHUT_WR)  # the client is gone: no more bytes will come
            assert sock.recv(1024) == b""  # closed without an answer
        assert client.post("/media", content=b"a" * 100).status_code == 201
    assert calls == [b"a" * 100]


def test_fake_pim_faults_over_the_socket() -> None:
    pim = FakePim(products=10)
    with serve(pim) as base, httpx.Client(base_url=base) as client:
        login(client)
        pim.drop_next(1, path_prefix=f"{API}/products")
        with pytest.raises(httpx.TransportError):
            client.get(f"{API}/products-uuid")
        pim.fail_next(1, status=429, retry_after=3)
        limited = client.get(f"{API}/products-uuid")
        assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
        assert client.get(f"{API}/products-uuid").status_code == 200


def test_a_handler_bug_is_a_500(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("boom")

    with serve(handler) as base, httpx.Client(base_url=base) as client:
        answer = client.get("/")
    assert answer.status_code == 500 and answer.json()["code"] == 500
    assert "RuntimeError: boom" in capsys.readouterr().err


def test_server_is_gone_after_exit() -> None:
    with serve(lambda request: httpx.Response(204)) as base, httpx.Client() as client:
        assert client.get(base).status_code == 204
    with pytest.raises(httpx.ConnectError):
        httpx.get(base)


def test_large_answers_share_one_keep_alive_connection_with_nagle_off() -> None:
    """What keeps pages fast on loopback, checked on the server's own socket rather than timed
    (these machines are shared): every request on one keep-alive connection, and TCP_NODELAY
    on it, since Nagle's algorithm with a delayed ACK would hold each answer back 40 ms."""
    page = b'{"items": "' + b"x" * 400_000 + b'"}'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=page, headers={"Content-Type": "application/json"})

    server = _make_server(handler, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        with httpx.Client(base_url=server.base_url) as client:
            for _ in range(60):
                assert client.get("/page").content == page
            with server.connections_lock:
                connections = list(server.connections)
            assert len(connections) == 1
            assert connections[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_forever_stops_cleanly(sig: signal.Signals) -> None:
    # A suite started as a background job of a shell without job control inherits SIGINT
    # ignored, and so would the server: give it Python's usual Ctrl-C, the case under test.
    code = (
        "import signal, httpx\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from pimsync.testing.server import serve_forever\n"
        "serve_forever(lambda r: httpx.Response(200, text='up'), port=0,\n"
        "              on_ready=lambda url: print(url, flush=True))\n"
        "print('stopped', flush=True)\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert httpx.get(url).text == "up"
            proc.send_signal(sig)
            assert proc.wait(timeout=10) == 0
            assert proc.stdout.read().strip() == "stopped"
        finally:
            if proc.poll() is None:  # a failed stop must fail the test, not hang the suite
                proc.kill()
                proc.wait()


def test_sigterm_while_a_connection_is_accepted_still_stops() -> None:
    """socketserver catches Exception around each new connection: a stop raised there (the
    signal lands while a connection thread starts) must not be swallowed."""
    code = (
        "import os, signal, socketserver, httpx\n"
        "from pimsync.testing.server import serve_forever\n"
        "original = socketserver.ThreadingMixIn.process_request\n"
        "def process_request(self, request, address):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    original(self, request, address)\n"
        "socketserver.ThreadingMixIn.process_request = process_request\n"
        "serve_forever(lambda r: httpx.Response(200, text='up'), port=0,\n"
        "              on_ready=lambda url: print(url, flush=True))\n"
        "print('stopped', flush=True)\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(url, timeout=5)
            assert proc.wait(timeout=10) == 0
            assert proc.stdout.read().strip() == "stopped"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
