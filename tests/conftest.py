"""Shared test helpers.

Tests that need the data folder (`CTJAX_DATA`, default `../shared/data`) get every path through
`need_data(paths.accessor, ...)` (import it with `from conftest import need_data`), which
skips with a reason naming `CTJAX_DATA` on a machine without the data, so the README's test
command passes on a fresh clone. CI (`.ci/run`) exports `CTJAX_REQUIRE_DATA=1`, which turns
those skips into failures, so nothing is silently left out there.
"""

from __future__ import annotations

import os

import pytest

from ctjax import paths


def need_data(fn, *args, **kwargs):
    """Calls a `ctjax.paths` accessor (e.g. `paths.released_student`); skips the test if the
    data is missing, or fails it when `CTJAX_REQUIRE_DATA=1`."""
    try:
        return fn(*args, **kwargs)
    except paths.DataNotFoundError as e:
        message = f"needs {paths.ENV_VAR} data: {e}"
        if os.environ.get("CTJAX_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
