"""Frames the model cannot take are refused with ImageError (a ValueError) naming their shape."""

import numpy as np
import pytest

from edge_inspect.vlm.preprocess import ImageError, ImageSettings, preprocess, to_rgb

BAD = [
    (np.zeros((0, 10, 3), np.uint8), "0x10x3"),
    (np.zeros((10, 0, 3), np.uint8), "10x0x3"),
    (np.zeros((0, 0), np.uint8), "0x0"),
    (np.zeros((10, 10, 3), np.float32), "10x10x3"),
    (np.zeros((10, 10, 2), np.uint8), "10x10x2"),
    (np.zeros((10, 10, 3, 1), np.uint8), "10x10x3x1"),
    (np.zeros(10, np.uint8), "10"),
    (None, "NoneType"),
    ([[1, 2], [3, 4]], "list"),
]


@pytest.mark.parametrize("frame,shape", BAD)
def test_bad_frames_name_their_shape(frame, shape):
    with pytest.raises(ImageError, match=shape):
        preprocess(to_rgb(frame), ImageSettings())
    assert issubclass(ImageError, ValueError)


@pytest.mark.parametrize("frame,shape", BAD[:3])
def test_empty_rgb_frames_given_directly_to_preprocess(frame, shape):
    if frame.ndim == 3:
        with pytest.raises(ImageError, match="empty"):
            preprocess(frame, ImageSettings())


def test_model_encode_refuses_an_empty_frame(tiny_bundle):
    from edge_inspect.vlm import load_bundle

    model = load_bundle(tiny_bundle)
    with pytest.raises(ImageError, match="0x640x3"):
        model.encode(np.zeros((0, 640, 3), np.uint8), order="bgr")


def test_good_frames_still_pass():
    for frame in (np.zeros((5, 7), np.uint8), np.zeros((5, 7, 1), np.uint8), np.zeros((5, 7, 4), np.uint8)):
        assert to_rgb(frame).shape == (5, 7, 3)
