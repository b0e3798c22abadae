"""TLS toward clients with Python's own clients: `httpx` over https (a plain request and an
SSE stream, over HTTP/1.1 and over HTTP/2 chosen by ALPN; and HTTP/2 with prior knowledge on
the plain port) and the `websockets` library over `wss://`, each verifying gripway's certificate
against a test CA made here with the openssl command line (no key is checked in). gripway
serves its built-in demo (`/`, `/test/sse`, `/test/websocket`, channel `test`) on a TLS
listener, with the certificate directory `--tls-certs-dir` in Pushpin's layout."""

import asyncio
import functools
import ssl
import subprocess

import httpx
import pytest
from gripcontrol import GripPubControl, HttpStreamFormat, WebSocketMessageFormat
from pubcontrol import Item
from websockets.asyncio.client import connect


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture
def certs(tmp_path):
    """A CA (`ca.pem`, beside the directory) and `certs/default.{crt,key}` signed by it for
    localhost and 127.0.0.1; returns (certs dir, CA file)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=gripway interop CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=tmp_path)
    (tmp_path / "certs").mkdir()
    openssl("req", "-new", *ec, "-keyout", "certs/default.key", "-out", "default.csr",
            "-subj", "/CN=localhost", cwd=tmp_path)
    (tmp_path / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "default.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf",
            "-out", "certs/default.crt", cwd=tmp_path)
    return tmp_path / "certs", tmp_path / "ca.pem"


@pytest.fixture
def tls_gripway(start_gripway, certs):
    certs_dir, ca = certs
    gw = start_gripway("--tls-port", "127.0.0.1:0", "--tls-certs-dir", str(certs_dir))
    assert gw.tls_addr, "the TLS listener is logged:\n" + "\n".join(gw.log)
    gw.tls_port = gw.tls_addr.rsplit(":", 1)[1]
    gw.ca_context = ssl.create_default_context(cafile=str(ca))
    return gw


def publish(gw, channel, fmt):
    GripPubControl({"control_uri": gw.control_uri}).publish(channel, Item(fmt), blocking=True)


def test_httpx_plain_request_and_sse_over_https(tls_gripway):
    gw = tls_gripway
    with httpx.Client(verify=gw.ca_context, timeout=5) as client:
        # by IP address (no SNI: the default certificate, which covers 127.0.0.1)
        r = client.get(f"https://127.0.0.1:{gw.tls_port}/")
        assert r.status_code == 200
        assert r.http_version == "HTTP/1.1"
        assert "Gripway demo" in r.text

        # by name (SNI localhost), an SSE stream that receives what is published
        with client.stream("GET", f"https://localhost:{gw.tls_port}/test/sse") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert gw.wait_metric("gripway_subscriptions", 1.0), "\n".join(gw.log)
            for i in range(3):
                publish(gw, "test", HttpStreamFormat(f"event: message\ndata: over tls {i}\n\n"))
            want = [f"data: over tls {i}" for i in range(3)]
            got = []
            for line in r.iter_lines():  # each read bounded by the client's timeout
                if line.startswith("data: over tls"):
                    got.append(line)
                if len(got) == len(want):
                    break
            assert got == want

    # a client that does not trust the test CA refuses the certificate
    with httpx.Client(timeout=5) as client, pytest.raises(httpx.ConnectError):
        client.get(f"https://localhost:{gw.tls_port}/")


def read_events(response, prefix, n):
    """The first `n` SSE `data:` lines of `response` starting with `prefix`."""
    got = []
    for line in response.iter_lines():  # each read bounded by the client's timeout
        if line.startswith(prefix):
            got.append(line)
        if len(got) == n:
            break
    return got


def test_httpx_http2_over_tls_and_prior_knowledge(tls_gripway):
    gw = tls_gripway
    # over TLS, h2 agreed by ALPN: a plain request, then two SSE streams on one connection
    with httpx.Client(verify=gw.ca_context, http2=True, timeout=5) as client:
        r = client.get(f"https://localhost:{gw.tls_port}/")
        assert r.status_code == 200
        assert r.http_version == "HTTP/2"
        assert "Gripway demo" in r.text
        url = f"https://localhost:{gw.tls_port}/test/sse"
        with client.stream("GET", url) as a, client.stream("GET", url) as b:
            assert a.http_version == b.http_version == "HTTP/2"
            assert a.headers["content-type"].startswith("text/event-stream")
            assert gw.wait_metric("gripway_subscriptions", 2.0), "\n".join(gw.log)
            for i in range(3):
                publish(gw, "test", HttpStreamFormat(f"event: message\ndata: over h2 {i}\n\n"))
            want = [f"data: over h2 {i}" for i in range(3)]
            assert read_events(a, "data: over h2", 3) == want
            assert read_events(b, "data: over h2", 3) == want

    # on the plain port, HTTP/2 with prior knowledge (h2c); HTTP/1.1 still works there
    plain = gw.url("").rstrip("/")
    with httpx.Client(http1=False, http2=True, timeout=5) as client:
        r = client.get(f"{plain}/")
        assert r.status_code == 200 and r.http_version == "HTTP/2"
    with httpx.Client(timeout=5) as client:
        r = client.get(f"{plain}/")
        assert r.status_code == 200 and r.http_version == "HTTP/1.1"


def bounded(test):
    """Runs an async test on its own event loop, for at most 30 seconds."""
    @functools.wraps(test)
    def run(*args, **kw):
        return asyncio.run(asyncio.wait_for(test(*args, **kw), 30))
    return run


@bounded
async def test_websockets_over_wss_echo_and_publish(tls_gripway):
    gw = tls_gripway
    url = f"wss://localhost:{gw.tls_port}/test/websocket"
    async with connect(url, ssl=gw.ca_context, open_timeout=5, close_timeout=5) as ws:
        await ws.send("hello wss")
        assert await asyncio.wait_for(ws.recv(), 5) == "hello wss"
        assert await asyncio.to_thread(gw.wait_metric, "gripway_subscriptions", 1.0)
        await asyncio.to_thread(publish, gw, "test", WebSocketMessageFormat("published over wss"))
        assert await asyncio.wait_for(ws.recv(), 5) == "published over wss"
        await ws.send("x" * 60_000)  # several TLS records from the client
        assert await asyncio.wait_for(ws.recv(), 5) == "x" * 60_000
