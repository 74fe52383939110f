"""OpenAI's values in the catalog, the planner and the encoder; uploaded videos' checks; character names.

Pure and in-process: the end-to-end side (the SDK against a server, the mp4s decoded) is test_videos_sdk.
"""

from __future__ import annotations

import io
import json

import av
import numpy as np
import pytest

from reelchat.catalog import CatalogError, load_catalog
from reelchat.domain import Orientation, VideoRequest
from reelchat.engines.diffusers_spec import model_frames
from reelchat.media.encode import MediaError, encode_mp4, encode_spritesheet, encode_webp, fit_aspect, probe_mp4
from reelchat.media.uploads import VideoLimits, check_video_upload
from reelchat.service.characters import _mentions
from reelchat.service.errors import InvalidRequest
from reelchat.service.planning import plan_task

CATALOG = load_catalog(None, None)
SORA2, PRO = CATALOG["sora-2"], CATALOG["sora-2-pro"]
_WAN = {"seconds": [5], "default_seconds": 5, "portrait_sizes": ["480x832"], "landscape_sizes": ["832x480"]}
_WAN |= {"fps": 16, "steps": 30}
LIMITS = VideoLimits(max_bytes=1 << 20, max_seconds=10, max_frames=100, max_side=256)


def test_every_model_accepts_openais_values_and_its_own() -> None:
    assert SORA2.allowed_seconds == [4, 8, 10, 12]
    assert PRO.allowed_seconds == [4, 8, 12, 15]
    assert SORA2.public_sizes == ["720x1280", "1280x720", "1024x1792", "1792x1024", "96x160", "160x96"]
    assert (SORA2.default_seconds, PRO.default_seconds) == (10, 15)  # the seed's


def test_a_public_size_renders_at_the_models_own_size_of_the_closest_aspect() -> None:
    assert [SORA2.render_size(s) for s in SORA2.public_sizes] == ["96x160", "160x96"] * 2 + ["96x160", "160x96"]
    assert PRO.render_size("720x1280") == "144x256"
    wan = load_catalog(None, json.dumps({"wan": {**_WAN, "portrait_sizes": ["480x832", "720x1280"]}}))["wan"]
    assert (wan.render_size("720x1280"), wan.render_size("1024x1792")) == ("720x1280", "480x832")


def test_the_catalog_maps_sizes_explicitly_and_checks_the_map() -> None:
    mapped = {"wan": {**_WAN, "render_sizes": {"1792x1024": "832x480"}}}
    assert load_catalog(None, json.dumps(mapped))["wan"].render_size("1792x1024") == "832x480"
    for bad, words in (({"640x480": "832x480"}, "neither"), ({"720x1280": "832x480"}, "orientation")):
        with pytest.raises(CatalogError, match=words):
            load_catalog(None, json.dumps({"wan": {**_WAN, "render_sizes": bad}}))


def test_the_planner_keeps_the_public_size_and_renders_the_models() -> None:
    req = VideoRequest("sora-2", "a fox", seconds=8, size="1792x1024")
    task = plan_task(SORA2, "t", req, source=None, origin="videos")
    assert (task.size, task.width, task.height, task.seconds, task.frames) == ("1792x1024", 160, 96, 8, 32)
    assert task.orientation is Orientation.LANDSCAPE
    # omitted: OpenAI's default in the Videos API, the model's own in chat
    assert plan_task(SORA2, "t", VideoRequest("sora-2", "a"), source=None, origin="videos").size == "720x1280"
    assert plan_task(SORA2, "t", VideoRequest("sora-2", "a"), source=None, origin="chat").size == "96x160"
    with pytest.raises(InvalidRequest, match=r"allowed: 4, 8, 10, 12\."):
        plan_task(SORA2, "t", VideoRequest("sora-2", "a", seconds=5), source=None, origin="videos")
    with pytest.raises(InvalidRequest, match="720x1280, 1280x720, 1024x1792, 1792x1024, 96x160, 160x96"):
        plan_task(SORA2, "t", VideoRequest("sora-2", "a", size="640x480"), source=None, origin="videos")


def test_the_model_makes_the_fewest_k_m_plus_1_frames_that_hold_the_video() -> None:
    assert [model_frames(n, 4) for n in (1, 4, 5, 6, 16, 40, 60, 81)] == [5, 5, 5, 9, 17, 41, 61, 81]
    assert [model_frames(n, 8) for n in (1, 9, 10, 40)] == [9, 9, 17, 41]


def _clip(frames: int, height: int, width: int) -> np.ndarray:
    grid = np.arange(frames * height * width * 3, dtype=np.uint32).reshape(frames, height, width, 3)
    return (grid % 251).astype(np.uint8)


def test_the_encoder_delivers_the_public_size_and_duration() -> None:
    clip = _clip(8, 160, 96)
    info = probe_mp4(encode_mp4(clip, 4, size=(720, 1280)))
    assert (info.width, info.height, info.frames, info.duration) == (720, 1280, 8, 2.0)
    with pytest.raises(MediaError, match="even"):
        encode_mp4(clip, 4, size=(721, 1280))
    from PIL import Image

    assert Image.open(io.BytesIO(encode_webp(clip[0], size=(720, 1280)))).size == (720, 1280)
    assert Image.open(io.BytesIO(encode_spritesheet(clip, tile_size=(720, 1280)))).size == (5 * 720, 2 * 1280)


def test_fit_aspect_crops_the_centre() -> None:
    clip = _clip(2, 160, 96)
    assert fit_aspect(clip, 720, 1280).shape == (2, 160, 90, 3)  # 9:16 of a 3:5 picture
    assert fit_aspect(clip, 1792, 1024).shape == (2, 55, 96, 3)
    assert np.array_equal(fit_aspect(clip, 720, 1280)[0, 0, 0], clip[0, 0, 3])


def test_an_upload_is_checked_within_its_limits() -> None:
    checked = check_video_upload(encode_mp4(_clip(6, 48, 64), 3), LIMITS)
    assert (checked.width, checked.height, checked.frames, checked.duration) == (64, 48, 6, 2.0)
    assert checked.middle.shape == (48, 64, 3)
    refusals = [
        (b"x" * (LIMITS.max_bytes + 1), "bytes"),
        (b"not a video", "not a video"),
        (encode_mp4(_clip(2, 32, 512), 2), "sides"),
        (encode_mp4(_clip(40, 16, 16), 2), "lasts"),  # 20 s
        (encode_mp4(_clip(101, 16, 16), 50), "frames"),
        (encode_mp4(_clip(6, 48, 64), 3)[:400], "decod"),
    ]
    for data, words in refusals:
        with pytest.raises(MediaError, match=words):
            check_video_upload(data, LIMITS)


def test_an_upload_in_another_container_is_kept_as_mp4() -> None:
    out = io.BytesIO()
    with av.open(out, mode="w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=3)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for rgb in _clip(6, 48, 64):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    checked = check_video_upload(out.getvalue(), LIMITS)
    info = probe_mp4(checked.mp4)
    assert (info.codec, info.width, info.height, info.frames) == ("h264", 64, 48, 6)


@pytest.mark.parametrize(
    ("prompt", "at", "found"),
    [
        ("Mochi dances", False, True),
        ("now @mochi dances", True, True),
        ("mochimochi dances", False, False),
        ("a cat named Mochi.", False, True),
        ("send an email to x@Mochi", False, False),
        ("Mochi_2 waves", False, False),
        ("m" * 50_000 + "ochi", False, False),
    ],
)
def test_a_prompt_names_a_character_by_whole_words(prompt: str, at: bool, found: bool) -> None:
    assert _mentions(prompt, "Mochi", at=at) is found
