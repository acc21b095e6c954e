"""The runnable examples in the monitoring modules' docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "fraudstream.monitoring.metrics",
    "fraudstream.monitoring.prequential",
    "fraudstream.monitoring.drift",
    "fraudstream.monitoring.loss",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
