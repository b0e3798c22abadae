"""The hostile battery's fixture: one gripway process per test module, with its origins and
its canary (see harness.py). A module may set GRIPWAY_EXTRA_CONFIG to add TOML to the config
and GRIPWAY_EXTRA_ROUTES to put routes before the battery's own.
Each module ends with a test that checks the canary over the whole module."""

import pytest

from harness import Env


@pytest.fixture(scope="module")
def env(request, tmp_path_factory):
    extra = getattr(request.module, "GRIPWAY_EXTRA_CONFIG", "")
    routes = getattr(request.module, "GRIPWAY_EXTRA_ROUTES", [])
    e = Env(tmp_path_factory.mktemp("hostile"), extra, routes)
    yield e
    e.close()
