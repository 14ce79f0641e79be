from __future__ import annotations

import pytest

from authrelay.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)
