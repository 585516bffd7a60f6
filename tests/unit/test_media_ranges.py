"""The Range policy as a table (RFC 9110 §14)."""

from __future__ import annotations

import pytest

from service.media import ranges

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, ranges.Whole()),
        ("bytes=0-1", ranges.Partial(0, 1)),
        ("bytes=0-", ranges.Partial(0, 999)),
        ("bytes=500-", ranges.Partial(500, 999)),
        ("bytes=999-", ranges.Partial(999, 999)),
        ("bytes=10-5000", ranges.Partial(10, 999)),
        ("bytes=-1", ranges.Partial(999, 999)),
        ("bytes=-200", ranges.Partial(800, 999)),
        ("bytes=-5000", ranges.Partial(0, 999)),
        ("BYTES = 3-4", ranges.Partial(3, 4)),
        ("bytes=1000-", ranges.Unsatisfiable()),
        ("bytes=5000-6000", ranges.Unsatisfiable()),
        ("bytes=-0", ranges.Unsatisfiable()),
        ("bytes=5-3", ranges.Whole()),
        ("bytes=0-1,5-6", ranges.Whole()),
        ("items=0-1", ranges.Whole()),
        ("bytes=a-b", ranges.Whole()),
        ("bytes=-", ranges.Whole()),
        ("bytes=", ranges.Whole()),
        ("garbage", ranges.Whole()),
    ],
)
def test_range_decisions(header: str | None, expected: ranges.Decision) -> None:
    assert ranges.decide(header, SIZE) == expected


def test_content_range_values() -> None:
    assert ranges.Partial(0, 1).content_range(SIZE) == "bytes 0-1/1000"
    assert ranges.Partial(0, 1).length == 2
    assert ranges.Unsatisfiable().content_range(SIZE) == "bytes */1000"


def test_an_empty_file_has_no_satisfiable_range() -> None:
    assert ranges.decide("bytes=0-", 0) == ranges.Unsatisfiable()
    assert ranges.decide("bytes=-10", 0) == ranges.Unsatisfiable()
