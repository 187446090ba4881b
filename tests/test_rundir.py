"""Run directories and the environment record."""

from __future__ import annotations

import os

import pytest

from slimkit.rundir import busy_warning


def test_a_busy_machine_is_flagged(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (4.2, 3.0, 2.0))
    warning = busy_warning()
    assert warning is not None and "load average 4.2 on 2 cores" in warning
    monkeypatch.setattr(os, "getloadavg", lambda: (2.9, 3.0, 2.0))
    assert busy_warning() is None  # our own two timing threads plus a little noise
