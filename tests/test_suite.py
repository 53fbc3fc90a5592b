"""The test suite's own set-up: modules marked with an xdist_group stay on one worker."""

import pytest

pytestmark = pytest.mark.xdist_group("suite")


def test_a_grouped_test_carries_its_group_in_its_id(request):
    """pytest-xdist's `--dist loadgroup` deals tests by the "@group" suffix of their ids;
    without it (pytest-xdist 3.8 under pytest 9, before tests/conftest.py's hook) a group's
    tests, and its module fixtures, were spread over every worker."""
    if not request.config.getoption("loadgroup", False):
        pytest.skip("only under --dist loadgroup (the suite's default with pytest-xdist)")
    assert request.node.nodeid.endswith("@suite"), request.node.nodeid
