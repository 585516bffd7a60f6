"""A person small in the picture: segmented and cleaned from the background at their
own scale, not the picture's."""

from __future__ import annotations

import numpy as np

from service.engine import composite


def test_the_plate_is_filled_at_the_persons_scale() -> None:
    """A quarter-size fill of a small person reaches far past them in blocks a third of
    their face's size; at their own scale the fill hugs them."""
    assert [composite.plate_factor(w) for w in (20, 60, 100, 127, 128, 300)] == [1, 1, 3, 3, 4, 4]
    rng = np.random.default_rng(3)
    h, w = 240, 320
    picture = rng.integers(60, 200, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    person = (np.hypot(xx - 160, yy - 120) <= 30).astype(np.float32)
    reach = {}
    for factor in (1, 4):
        _, area = composite.clean_plate(picture, person, factor=factor)
        filled = np.hypot(xx - 160, yy - 120)[area > 0.5]
        reach[factor] = filled.max() - 30
    assert reach[1] <= 6 and reach[4] >= 12
