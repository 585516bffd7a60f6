"""Handing frames to the encoder: the planes it is given are the picture's, at every size."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from service.engine import contracts, encoder


@pytest.mark.parametrize("ratio", sorted(contracts.RATIOS))
def test_a_frame_reaches_the_encoder_with_the_same_planes_as_pyav_makes(ratio: str) -> None:
    width, height = contracts.RATIOS[ratio]
    rng = np.random.default_rng(7)
    bgr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)

    ours = encoder.yuv420p_frame(yuv)
    pyav = av.VideoFrame.from_ndarray(yuv, format="yuv420p")

    assert (ours.width, ours.height, ours.format.name) == (width, height, "yuv420p")
    assert np.array_equal(ours.to_ndarray(), yuv)
    assert np.array_equal(ours.to_ndarray(), pyav.to_ndarray())
