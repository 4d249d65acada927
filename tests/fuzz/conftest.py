"""Hypothesis settings for the fuzzers: a few hundred inputs per target in `make test` (seconds),
``LABKIT_FUZZ_EXAMPLES`` inputs per target in `make fuzz` (10⁵)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "labkit",
    max_examples=int(os.environ.get("LABKIT_FUZZ_EXAMPLES", "300")),
    deadline=None,  # a hang is caught by pytest-timeout; slow inputs have their own bounded tests
    derandomize=not os.environ.get("LABKIT_FUZZ_EXAMPLES"),  # make test: the same inputs every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
settings.load_profile("labkit")
