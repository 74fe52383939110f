"""Media: encode → decode round trips, storage safety, HTTP ranges."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from reelchat.media.encode import (
    MediaError,
    decode_mp4,
    encode_mp4,
    encode_spritesheet,
    encode_webp,
    pick_thumbnail_frame,
    probe_mp4,
    thumbnail_size,
)
from reelchat.media.ranges import RangeNotSatisfiable, content_range, parse_range
from reelchat.media.storage import (
    LocalStorage,
    StorageError,
    check_media_name,
    new_media_name,
)

# --------------------------------------------------------------------------- helpers


def gradient_clip(frames: int, height: int, width: int) -> npt.NDArray[np.uint8]:
    """A smooth, slowly moving colour gradient: easy for H.264, so decoded ≈ input."""
    y = np.linspace(0.0, 1.0, height)[:, None]
    x = np.linspace(0.0, 1.0, width)[None, :]
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        shift = t / max(1, frames)
        out[t, ..., 0] = (255 * ((x + shift) % 1.0) * np.ones_like(y)).astype(np.uint8)
        out[t, ..., 1] = (255 * y * np.ones_like(x)).astype(np.uint8)
        out[t, ..., 2] = (255 * (1 - 0.5 * x - 0.5 * y) * 0.8 + 20 * shift).astype(np.uint8)
    return out


def top_level_boxes(data: bytes) -> list[str]:
    """The types of an MP4's top-level boxes, in file order."""
    boxes: list[str] = []
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
        elif size == 0:
            size = len(data) - pos
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        pos += size
    return boxes


# --------------------------------------------------------------------------- mp4


@pytest.mark.parametrize(
    ("height", "width", "expect_h", "expect_w"),
    [(96, 160, 96, 160), (95, 161, 96, 162), (160, 96, 160, 96)],
)
def test_mp4_round_trip(height: int, width: int, expect_h: int, expect_w: int) -> None:
    clip = gradient_clip(17, height, width)
    data = encode_mp4(clip, fps=8)

    info = probe_mp4(data)
    assert info.codec == "h264"
    assert info.pix_fmt == "yuv420p"
    assert (info.width, info.height) == (expect_w, expect_h)
    assert info.frames == 17
    assert info.fps == pytest.approx(8.0)
    assert info.duration == pytest.approx(17 / 8, abs=0.01)

    decoded = decode_mp4(data)
    assert decoded.dtype == np.uint8
    assert decoded.shape == (17, expect_h, expect_w, 3)
    # The padding repeats edge pixels, so the original area decodes close to the input.
    error = np.abs(decoded[:, :height, :width].astype(np.int16) - clip.astype(np.int16))
    assert error.mean() < 4.0, error.mean()
    # Frames stay in order: each decoded frame is nearest to its own source frame.
    for i in (0, 8, 16):
        dists = [np.abs(decoded[i, :height, :width].astype(int) - f.astype(int)).mean() for f in clip]
        assert int(np.argmin(dists)) == i


def test_mp4_is_faststart_and_browser_playable() -> None:
    data = encode_mp4(gradient_clip(17, 96, 160), fps=8)
    boxes = top_level_boxes(data)
    assert boxes[0] == "ftyp"
    assert "moov" in boxes
    assert "mdat" in boxes
    assert boxes.index("moov") < boxes.index("mdat"), boxes

    import av  # the profile is only visible through the codec context

    with av.open(io.BytesIO(data)) as container:
        ctx = container.streams.video[0].codec_context
        assert ctx.profile in ("Main", "High")


def test_mp4_random_frames_and_crf() -> None:
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, size=(5, 64, 80, 3), dtype=np.uint8)
    small = encode_mp4(clip, fps=24, crf=40)
    large = encode_mp4(clip, fps=24, crf=10)
    assert len(small) < len(large)
    assert decode_mp4(large).shape == (5, 64, 80, 3)
    assert probe_mp4(small).fps == pytest.approx(24.0)


def test_single_frame_mp4() -> None:
    data = encode_mp4(gradient_clip(1, 32, 32), fps=1)
    assert probe_mp4(data).frames == 1
    assert decode_mp4(data).shape == (1, 32, 32, 3)


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((0, 16, 16, 3), np.uint8),  # no frames
        np.zeros((2, 16, 16), np.uint8),  # no channel axis
        np.zeros((2, 16, 16, 4), np.uint8),  # RGBA
        np.zeros((2, 16, 16, 3), np.float32),  # not uint8
        np.zeros((2, 0, 16, 3), np.uint8),  # empty side
    ],
)
def test_encode_mp4_rejects_bad_frames(frames: npt.NDArray[np.uint8]) -> None:
    with pytest.raises(MediaError):
        encode_mp4(frames, fps=8)


@pytest.mark.parametrize("fps", [0, -1, 2.5, True])
def test_encode_mp4_rejects_bad_fps(fps: int) -> None:
    with pytest.raises(MediaError):
        encode_mp4(gradient_clip(2, 16, 16), fps=fps)


@pytest.mark.parametrize(
    "data",
    [b"", b"not a video at all", b"\x00" * 4096, b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100],
)
def test_bad_mp4_bytes_raise_media_error(data: bytes) -> None:
    for reader in (decode_mp4, probe_mp4):
        with pytest.raises(MediaError):
            reader(data)


def test_non_mp4_container_is_rejected() -> None:
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    with pytest.raises(MediaError):
        probe_mp4(png.getvalue())


def test_media_error_is_a_value_error() -> None:
    assert issubclass(MediaError, ValueError)


# --------------------------------------------------------------------------- images


def test_pick_thumbnail_frame_is_middle() -> None:
    clip = gradient_clip(17, 8, 8)
    assert np.array_equal(pick_thumbnail_frame(clip), clip[8])


def test_webp_upscales_tiny_frames_to_128_short_side() -> None:
    frame = gradient_clip(1, 160, 96)[0]  # portrait, 96 wide
    image = Image.open(io.BytesIO(encode_webp(frame)))
    assert image.format == "WEBP"
    assert image.size == (128, 213)
    assert min(image.size) >= 128


def test_webp_downscales_large_frames_preserving_aspect() -> None:
    frame = gradient_clip(1, 720, 1280)[0]
    image = Image.open(io.BytesIO(encode_webp(frame, max_side=512)))
    assert image.size == (512, 288)
    image.load()


def test_webp_keeps_mid_sized_frames() -> None:
    frame = gradient_clip(1, 200, 300)[0]
    assert Image.open(io.BytesIO(encode_webp(frame))).size == (300, 200)


def test_thumbnail_size_rules() -> None:
    assert thumbnail_size(96, 160) == (128, 213)
    assert thumbnail_size(1280, 720) == (512, 288)
    assert thumbnail_size(300, 200) == (300, 200)
    assert thumbnail_size(100, 2000) == (26, 512)  # max_side wins for extreme aspect ratios


def test_webp_rejects_bad_frames() -> None:
    with pytest.raises(MediaError):
        encode_webp(np.zeros((4, 4), np.uint8))
    with pytest.raises(MediaError):
        encode_webp(np.zeros((0, 4, 3), np.uint8))


def test_spritesheet_is_a_jpeg_grid() -> None:
    clip = gradient_clip(40, 90, 160)
    image = Image.open(io.BytesIO(encode_spritesheet(clip, columns=5, tiles=25, tile_width=160)))
    assert image.format == "JPEG"
    assert image.size == (5 * 160, 5 * 90)
    image.load()


def test_spritesheet_with_fewer_frames_than_tiles() -> None:
    clip = gradient_clip(7, 95, 161)
    image = Image.open(io.BytesIO(encode_spritesheet(clip, columns=5, tiles=25, tile_width=80)))
    assert image.format == "JPEG"
    assert image.size == (5 * 80, 2 * 47)  # 7 tiles, 5 per row; 95 * 80 / 161 ≈ 47
    small = Image.open(io.BytesIO(encode_spritesheet(clip[:3], columns=5)))
    assert small.size == (3 * 160, 94)


# --------------------------------------------------------------------------- storage


def test_new_media_name() -> None:
    a, b = new_media_name("mp4"), new_media_name("mp4")
    assert a != b
    stem, ext = a.split(".")
    assert ext == "mp4"
    assert len(stem) == 32
    assert int(stem, 16) >= 0
    assert check_media_name(new_media_name("webp")).endswith(".webp")
    for ext in ("exe", "", ".mp4", "MP4", "mp4/x"):
        with pytest.raises(StorageError):
            new_media_name(ext)


async def test_local_storage_round_trip(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "media")
    assert (tmp_path / "media").is_dir()
    name = new_media_name("mp4")
    assert not await storage.exists(name)

    await storage.save(name, b"hello")
    assert await storage.exists(name)
    assert await storage.load(name) == b"hello"
    path = storage.local_path(name)
    assert path is not None
    assert path.read_bytes() == b"hello"
    assert path.parent == (tmp_path / "media").resolve()

    await storage.save(name, b"replaced")
    assert await storage.load(name) == b"replaced"

    await storage.delete(name)
    assert not await storage.exists(name)
    await storage.delete(name)  # missing is fine
    with pytest.raises(FileNotFoundError):
        await storage.load(name)


async def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    names = [new_media_name("webp") for _ in range(5)]
    for i, name in enumerate(names):
        await storage.save(name, os.urandom(1000 + i))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # noqa: ASYNC240  (the test's own check)


async def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path)
    name = new_media_name("mp4")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        await storage.save(name, b"data")
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240  (the test's own check)


def test_stale_temp_files_are_swept(tmp_path: Path) -> None:
    stale = tmp_path / ".tmp-old.part"
    fresh = tmp_path / ".tmp-new.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(stale, (1, 1))
    LocalStorage(tmp_path)
    assert not stale.exists()
    assert fresh.exists()


ESCAPING_NAMES = [
    "../x.mp4",
    "/etc/passwd",
    "a/b.mp4",
    "..",
    ".",
    "x.mp4\x00",
    "",
    "x.mp4\n",
    "..\\x.mp4",
    "a\\b.mp4",
    ".tmp-abc.part",
    "noext",
    "x." + "a" * 6,
    "a" * 129 + ".mp4",
    "x.MP4",
    " x.mp4",
    "%2e%2e.mp4",
]


@pytest.mark.parametrize("name", ESCAPING_NAMES)
async def test_storage_rejects_unsafe_names(tmp_path: Path, name: str) -> None:
    storage = LocalStorage(tmp_path / "root")
    with pytest.raises(StorageError):
        storage.local_path(name)
    with pytest.raises(StorageError):
        await storage.save(name, b"x")
    with pytest.raises(StorageError):
        await storage.load(name)
    with pytest.raises(StorageError):
        await storage.exists(name)
    with pytest.raises(StorageError):
        await storage.delete(name)
    assert list((tmp_path / "root").iterdir()) == []
    assert issubclass(StorageError, ValueError)


async def test_storage_rejects_symlink_out_of_root(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    root = tmp_path / "root"
    storage = LocalStorage(root)
    (root / "link.mp4").symlink_to(outside)
    with pytest.raises(StorageError):
        storage.local_path("link.mp4")
    with pytest.raises(StorageError):
        await storage.load("link.mp4")


# --------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 1000, None),
        ("", 1000, None),
        ("bytes=0-", 1000, (0, 999)),
        ("bytes=0-0", 1000, (0, 0)),
        ("bytes=100-199", 1000, (100, 199)),
        ("bytes=100-5000", 1000, (100, 999)),  # end clamped
        ("bytes=999-", 1000, (999, 999)),
        ("bytes=-500", 1000, (500, 999)),
        ("bytes=-5000", 1000, (0, 999)),  # suffix longer than the body: all of it
        ("bytes=-1", 1000, (999, 999)),
        ("Bytes = 10-20", 1000, (10, 20)),
        (" bytes=10 - 20 ", 1000, (10, 20)),
        ("items=0-10", 1000, None),  # unknown unit: ignored
        ("bytes=abc", 1000, None),
        ("bytes=-", 1000, None),
        ("bytes=", 1000, None),
        ("bytes=5-1", 1000, None),  # last < first: invalid, ignored
        ("bytes=0-10,20-30", 1000, None),  # multi-range: ignored
        ("bytes=1-2-3", 1000, None),
        ("bytes=+1-2", 1000, None),
        ("bytes=\u0661-2", 1000, None),  # non-ASCII digit
        ("0-10", 1000, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=1000-", 1000),
        ("bytes=1000-2000", 1000),
        ("bytes=5000-6000", 1000),
        ("bytes=-0", 1000),
        ("bytes=0-", 0),
        ("bytes=-10", 0),
    ],
)
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.size == size
    assert info.value.content_range == f"bytes */{size}"


def test_content_range() -> None:
    assert content_range(0, 99, 1000) == "bytes 0-99/1000"
    with pytest.raises(ValueError, match="size must be >= 0, got -1"):
        parse_range("bytes=0-", -1)
