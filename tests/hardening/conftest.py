"""Hardening tests: the long variants (marker `slow`) run only with KEDASCALER_LONG=1."""

from __future__ import annotations

import os

import pytest

LONG = os.environ.get("KEDASCALER_LONG") == "1"


def pytest_collection_modifyitems(config, items):
    if LONG:
        return
    skip = pytest.mark.skip(reason="long variant: set KEDASCALER_LONG=1 to run it")
    for item in items:
        if "slow" in item.keywords and "hardening" in str(item.fspath):
            item.add_marker(skip)
