"""Shared by the unit tests of settings and of what reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.definitions import Passwords
from bus.settings import Settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting or broker password from the developer's shell or the repository's
    .env leaks in: the working directory is an empty temp dir."""
    for name in [*Settings.model_fields, *Passwords.model_fields]:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path
