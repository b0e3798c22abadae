"""Fixtures for the differential (Pushpin vs Gripway) suite.

* `origin` (session): one raw-socket origin shared by both servers. Tests register handlers
  under a unique path prefix (`route`) and read back exactly what the origin received.
* `pushpin` (session): the real Debian Pushpin (condure, zurl, pushpin-proxy,
  pushpin-handler) in a private rundir/logdir on free loopback ports, routed to `origin`.
  Skipped, with the reason, when /usr/bin/pushpin is not installed.
* `servers` (per test): {"pushpin": Target, "gripway": Target}; Gripway is started fresh
  through the shared `start_gripway` fixture with the same origin.
* `both(fn)`: runs fn(target) against both servers concurrently and returns their results.

Every wait is bounded; every process started here is stopped by its process group id."""

import os
import threading
import uuid

import pytest

from compat_servers import PUSHPIN_BIN, Origin, Pushpin, Target, free_port, routes_for


@pytest.fixture(scope="session")
def origin():
    o = Origin()
    yield o
    o.stop()


@pytest.fixture(scope="session")
def routes(origin):
    return routes_for(origin.addr, free_port())


@pytest.fixture(scope="session")
def pushpin(routes):
    if not os.path.exists(PUSHPIN_BIN):
        pytest.skip(f"Pushpin is not installed ({PUSHPIN_BIN} missing): apt-get install pushpin "
                    "(or set PUSHPIN_BIN) to run the differential compat suite")
    p = Pushpin(routes)
    yield p
    p.stop()


@pytest.fixture
def servers(pushpin, routes, start_gripway):
    gw = start_gripway(*[arg for r in routes for arg in ("--route", r)])
    return {"pushpin": Target("pushpin", pushpin.addr, pushpin.publish_addr),
            "gripway": Target("gripway", gw.addr, gw.publish_addr)}


@pytest.fixture
def both(servers):
    """both(fn) -> {"pushpin": fn(pushpin_target), "gripway": fn(gripway_target)}, run
    concurrently; an exception in either is re-raised with the server's name."""

    def run(fn):
        results, errors = {}, {}

        def one(name, target):
            try:
                results[name] = fn(target)
            except BaseException as e:  # noqa: BLE001 - re-raised below
                errors[name] = e

        threads = [threading.Thread(target=one, args=kv, daemon=True) for kv in servers.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        for name, e in errors.items():
            raise AssertionError(f"{name}: {type(e).__name__}: {e}") from e
        assert len(results) == 2, "a server did not finish within 60 s"
        return results

    return run


@pytest.fixture
def chan():
    """A channel name unique to this test (Pushpin is shared by the whole session)."""
    return f"ch-{uuid.uuid4().hex[:10]}"
