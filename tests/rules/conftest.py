"""Every test that takes `flavour` runs once with each lab flavour's promtool/amtool."""
from __future__ import annotations

import pytest

from tests.rules.flavour_tools import FLAVOURS


@pytest.fixture(params=FLAVOURS)
def flavour(request) -> str:
    return request.param
