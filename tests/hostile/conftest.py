"""The hostile battery's fixture: one gripway process per test module, with its origins and
its canary (see harness.py). A module may set GRIPWAY_EXTRA_CONFIG to add TOML to the config.
Each module ends with a test that checks the canary over the whole module."""

import pytest

from harness import Env


@pytest.fixture(scope="module")
def env(request, tmp_path_factory):
    extra = getattr(request.module, "GRIPWAY_EXTRA_CONFIG", "")
    e = Env(tmp_path_factory.mktemp("hostile"), extra)
    yield e
    e.close()
