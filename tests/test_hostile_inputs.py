"""Hostile inputs to the model package: image files (corrupt, truncated, every Pillow
mode, EXIF rotation, 16-bit, extreme sizes and decompression bombs), videos (corrupt,
empty, short, variable frame rate, huge), checkpoints whose safetensors headers lie,
and resident memory over many generate calls. Every case is either processed (pixels
checked) or refused with a MediaError / CheckpointError naming the file and the problem.
All files are small and written to tmp_path."""

from __future__ import annotations

import gc
import io
import json
import struct
import warnings
import zlib
from fractions import Fraction

import numpy as np
import pytest
import torch
from model_tiny import make_image, tiny_model
from PIL import Image, ImageFile
from safetensors.torch import save_file
from test_hardening import rss_bytes

import nvila
from nvila.media import (
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIDE,
    MediaError,
    frame_indices,
    load_image,
    load_video,
)

pytestmark = pytest.mark.model

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def _png(path, width: int, height: int, rows: bytes | None = None, bit_depth: int = 8, colour_type: int = 2):
    """A PNG written chunk by chunk. rows=None: an IDAT of 16 zero bytes, i.e. a header
    announcing width x height pixels the file does not hold (a decompression-bomb header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(rows if rows is not None else bytes(16))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def _encoded(fmt: str, size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    make_image(*size).save(buf, fmt)
    return buf.getvalue()


# ---- images: corrupt and truncated -----------------------------------------------


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("empty.png", b"", "corrupt"),
        ("random.jpg", np.random.default_rng(1).bytes(2000), "corrupt"),
        ("text.png", b"this is not an image\n" * 20, "corrupt"),
        ("signature_only.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "truncated"),  # a chunk length past the end
        ("half.png", _encoded("PNG")[: len(_encoded("PNG")) // 2], "truncated"),
        ("half.jpg", _encoded("JPEG")[: len(_encoded("JPEG")) // 2], "truncated"),
        ("header_only.jpg", _encoded("JPEG")[:400], "truncated"),
    ],
)
@pytest.mark.parametrize("load_truncated", [False, True])
def test_corrupt_and_truncated_images_refused(tmp_path, monkeypatch, name, content, problem, load_truncated):
    """Refused with the file's name and the problem, also when the process has set Pillow's
    LOAD_TRUNCATED_IMAGES (which would fill the missing part with grey); the flag is
    restored afterwards."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(MediaError, match=f"image: {f}: {problem}"):
        load_image(str(f))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is load_truncated


def test_missing_and_wrong_type():
    with pytest.raises(FileNotFoundError, match="nope.png not found"):
        load_image("nope.png")
    with pytest.raises(TypeError, match="image: expected a path"):
        load_image(np.zeros((4, 4), dtype=np.uint8))


# ---- images: modes ---------------------------------------------------------------


def _palette(transparency):
    p = Image.new("P", (3, 1))
    p.putpalette([*RED, *GREEN, *BLUE])
    for x in range(3):
        p.putpixel((x, 0), x)
    if transparency is not None:
        p.info["transparency"] = transparency
    return p


@pytest.mark.parametrize(
    "make, want",
    [
        (lambda: Image.new("L", (3, 1), 77), [(77, 77, 77)] * 3),
        (lambda: Image.new("LA", (3, 1), (77, 0)), [(77, 77, 77)] * 3),  # alpha dropped, not blended
        (lambda: Image.new("1", (3, 1), 1), [WHITE] * 3),
        (lambda: _palette(None), [RED, GREEN, BLUE]),
        (lambda: _palette(0), [RED, GREEN, BLUE]),  # one transparent index
        (lambda: _palette(bytes([0, 128, 255])), [RED, GREEN, BLUE]),  # per-index alpha
        (lambda: Image.new("RGBA", (3, 1), (10, 20, 30, 0)), [(10, 20, 30)] * 3),
        (lambda: Image.new("CMYK", (3, 1), (0, 255, 0, 0)), [(255, 0, 255)] * 3),  # magenta
        (lambda: Image.new("CMYK", (3, 1), (100, 0, 0, 100)), [(94, 155, 155)] * 3),  # (255-C)(255-K)/255
    ],
)
def test_modes_saved_as_png_become_rgb(tmp_path, make, want):
    """Every mode through a PNG file (CMYK through TIFF: PNG has no CMYK) and as an
    in-memory PIL image: RGB with the expected values, no warning."""
    im = make()
    f = tmp_path / ("im.tiff" if im.mode == "CMYK" else "im.png")
    im.save(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for src in (str(f), im):
            out = load_image(src)
            assert out.mode == "RGB" and out.size == (3, 1)
            assert [out.getpixel((x, 0)) for x in range(3)] == want


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "TIFF"])  # GIF, APNG, multi-page TIFF
def test_multi_frame_image_uses_the_first_frame(tmp_path, fmt):
    frames = [Image.new("RGB", (4, 3), c) for c in (RED, BLUE)]
    f = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(f, fmt, save_all=True, append_images=frames[1:])
    with Image.open(f) as im:
        assert im.n_frames == 2
    out = load_image(str(f))
    assert out.mode == "RGB" and out.size == (4, 3) and out.getpixel((1, 1)) == RED


def test_16bit_gray_is_scaled_not_clipped(tmp_path):
    """I;16 PNG: v -> round(v * 255 / 65535); Pillow's own convert("RGB") would give 255
    for every v >= 255."""
    values = [0, 128, 257, 1000, 32896, 65535]
    want = [0, 0, 1, 4, 128, 255]  # by hand: 128/257 = 0.498, 1000/257 = 3.89, 32896/257 = 128
    row = b"\0" + b"".join(struct.pack(">H", v) for v in values)
    f = _png(tmp_path / "gray16.png", len(values), 1, row, bit_depth=16, colour_type=0)
    with Image.open(f) as im:
        assert im.mode.startswith("I;16")
    out = np.asarray(load_image(str(f)))
    assert out.shape == (1, len(values), 3)
    assert out[0, :, 0].tolist() == want and (out[..., 0] == out[..., 2]).all()


def test_16bit_rgb_png_keeps_the_high_byte(tmp_path):
    """16-bit RGB PNG: Pillow decodes it to 8-bit RGB keeping each value's high byte
    (floor(v / 256), within 1 of round(v / 257)); no clipping."""
    px = [(65535, 32896, 256), (0, 511, 40000)]
    row = b"\0" + b"".join(struct.pack(">HHH", *p) for p in px)
    f = _png(tmp_path / "rgb16.png", 2, 1, row, bit_depth=16, colour_type=2)
    out = load_image(str(f))
    assert [out.getpixel((x, 0)) for x in range(2)] == [(255, 128, 1), (0, 1, 156)]


def test_float_and_int32_images():
    with pytest.raises(MediaError, match="mode F"):
        load_image(Image.new("F", (2, 2), 0.5))
    i = Image.new("I", (2, 1))
    i.putpixel((0, 0), 65535)
    i.putpixel((1, 0), 70000)  # beyond 16 bits: clipped to 65535
    assert list(np.asarray(load_image(i))[0, :, 0]) == [255, 255]


def test_exif_rotated_jpeg_is_transposed(tmp_path):
    """A 32x16 JPEG, left half red, right half blue, EXIF orientation 6 (display rotated
    90 degrees clockwise): loaded as 16x32, red on top, blue at the bottom."""
    a = np.zeros((16, 32, 3), dtype=np.uint8)
    a[:, :16] = RED
    a[:, 16:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6
    f = tmp_path / "rotated.jpg"
    Image.fromarray(a).save(f, quality=95, exif=exif)
    out = load_image(str(f))
    assert out.size == (16, 32)
    np.testing.assert_allclose(out.getpixel((8, 4)), RED, atol=12)
    np.testing.assert_allclose(out.getpixel((8, 28)), BLUE, atol=12)


# ---- images: sizes ---------------------------------------------------------------


@pytest.mark.parametrize(
    "width, height",
    [
        (20000, 20000),  # beyond Pillow's DecompressionBombError threshold
        (10000, 10000),  # in Pillow's DecompressionBombWarning range
        (MAX_IMAGE_SIDE + 1, 1),  # one row past the side cap
        (1, MAX_IMAGE_SIDE + 1),
        (8193, 8192),  # 8193 * 8192 > 2^26 pixels, sides under the cap
    ],
)
def test_decompression_bomb_headers_refused_before_decoding(tmp_path, width, height):
    """The PNG announces width x height pixels but holds 16 bytes of pixel data: the
    refusal says "too large" (not "truncated"), so it came from the header, before any
    decoding; no Pillow warning or error escapes."""
    assert width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS
    f = _png(tmp_path / "bomb.png", width, height)
    # beyond twice Image.MAX_IMAGE_PIXELS, Image.open itself refuses: Pillow's message then
    ours = width * height <= 2 * Image.MAX_IMAGE_PIXELS
    problem = f"{width}x{height} pixels is too large" if ours else "too large .*decompression bomb"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(MediaError, match=f"image: {f}: {problem}"):
            load_image(str(f))
    if ours:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the test's own Image.open
            lazy = Image.open(f)
        with lazy, pytest.raises(MediaError, match=f"image: {f}: {problem}"):
            load_image(lazy)  # a lazily opened PIL image: the same check before decoding


def test_size_caps_on_arrays_and_in_memory_images():
    with pytest.raises(MediaError, match="image: array: 1x16385 pixels is too large"):
        load_image(np.zeros((16385, 1, 3), dtype=np.uint8))
    with pytest.raises(MediaError, match="PIL image: 16385x1 pixels"):
        load_image(Image.new("L", (16385, 1)))


def test_largest_side_accepted(tmp_path):
    """A 16384x1 PNG (the side cap) is decoded; its pixels are intact."""
    row = b"\0" + bytes(range(256)) * 64 * 3
    out = load_image(str(_png(tmp_path / "long.png", MAX_IMAGE_SIDE, 1, row)))
    assert out.size == (MAX_IMAGE_SIDE, 1)
    assert np.asarray(out).reshape(-1).tolist() == list(row[1:])


@pytest.mark.parametrize("size", [(1, 1), (1, 5000), (5000, 1), (3, 4000)])
def test_extreme_aspect_ratios_run_through_the_model(tmp_path, size):
    """1x1 and 1:5000 images, as files, through tiling, the vision tower, the projector and
    generate: finite embeddings, an answer."""
    m = tiny_model()
    f = tmp_path / "im.png"
    make_image(*size).save(f)
    prompt = nvila.tokenizer.chat_template([{"role": "user", "content": "<image>What is in the image?"}])
    embeds, ids = m.embed_prompt(prompt, [str(f)])
    assert torch.isfinite(embeds).all() and (ids == -1).sum() > 0
    assert isinstance(nvila.generate(m, "What is in the image?", images=[str(f)], max_new_tokens=2), str)


# ---- videos ------------------------------------------------------------------------


def _video(path, colours, times_ms=None, size=(32, 24), codec="ffv1"):
    """A video of solid-colour frames; times_ms: each frame's presentation time (a
    variable frame rate), else 10 fps."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height = size
        s.pix_fmt = "yuv420p"
        s.time_base = Fraction(1, 1000)
        c.start_encoding()  # the header, also for a video without frames
        for i, col in enumerate(colours):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), col, dtype=np.uint8), format="rgb24")
            frame.pts = times_ms[i] if times_ms is not None else i * 100
            frame.time_base = Fraction(1, 1000)
            c.mux(s.encode(frame))
        c.mux(s.encode())
    return path


def _colours(frames) -> list[tuple[int, int, int]]:
    """The colour of each frame (the centre pixel), snapped to 0/255 (yuv420p rounding)."""
    return [tuple(255 if v > 127 else 0 for v in f.getpixel((f.width // 2, f.height // 2))) for f in frames]


PALETTE = [RED, GREEN, BLUE, WHITE, (255, 255, 0), (0, 255, 255), (255, 0, 255), (0, 0, 0)]


def test_video_fewer_frames_than_requested_repeats_frames(tmp_path):
    """3 frames, 8 requested: round(linspace(0, 2, 8)) = 0 0 1 1 1 1 2 2, as the
    official loader does."""
    f = _video(tmp_path / "short.mkv", [RED, GREEN, BLUE])
    assert _colours(load_video(str(f), 8)) == [RED, RED, GREEN, GREEN, GREEN, GREEN, BLUE, BLUE]


def test_video_variable_frame_rate_samples_by_timestamp(tmp_path):
    """Frames at 0, 0.1, 0.2, 0.3, 2.0, 2.1, 2.2, 3.5 s sampled at 1 fps: the frames on
    screen at t = 0, 1, 2, 3 s are 0, 3, 4, 6 (frame counts at the average rate of
    8 / 3.5 fps would pick frame 2 at t = 1)."""
    times = [0, 100, 200, 300, 2000, 2100, 2200, 3500]
    f = _video(tmp_path / "vfr.mkv", PALETTE, times_ms=times)
    assert _colours(load_video(str(f), 4, fps=1.0)) == [PALETTE[i] for i in (0, 3, 4, 6)]
    assert _colours(load_video(str(f), 4)) == [PALETTE[i] for i in (0, 2, 5, 7)]  # fps=0: by frame count


def test_frame_indices_with_times():
    times = [0.0, 0.1, 0.2, 0.3, 2.0, 2.1, 2.2, 3.5]
    assert frame_indices(8, 4, fps=1.0, times=times) == [0, 3, 4, 6]
    # a stream starting at 5 s: times are taken relative to the first frame
    assert frame_indices(8, 4, fps=1.0, times=[t + 5 for t in times]) == [0, 3, 4, 6]
    # constant rate: the timestamp rule and int(t * video_fps) agree
    cfr = [i / 25 for i in range(100)]
    assert frame_indices(100, 8, 2.0, 25.0, cfr) == frame_indices(100, 8, 2.0, 25.0) == [0, 12, 25, 37, 50, 62, 75, 87]
    with pytest.raises(ValueError, match="not increasing"):
        frame_indices(3, 2, fps=1.0, times=[0.0, 2.0, 1.0])


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "corrupt or not a video"),
        (np.random.default_rng(2).bytes(5000), "corrupt or not a video"),
        (b"\x1a\x45\xdf\xa3" + bytes(100), "corrupt or not a video"),  # an EBML (mkv) signature, then zeros
    ],
)
def test_corrupt_video_refused(tmp_path, content, problem):
    f = tmp_path / "bad.mkv"
    f.write_bytes(content)
    with pytest.raises(MediaError, match=f"video: {f}: {problem}"):
        load_video(str(f), 4)


def test_video_without_frames_or_video_stream(tmp_path):
    import av

    empty = _video(tmp_path / "empty.avi", [])  # a video stream, no frame
    with pytest.raises(MediaError, match=f"video: {empty}: no frames could be decoded"):
        load_video(str(empty), 4)
    with av.open(str(tmp_path / "audio.mp4"), "w") as c:  # no stream at all
        c.add_stream("aac", rate=8000)
        c.start_encoding()
    with pytest.raises(MediaError, match="audio.mp4: no video stream"):
        load_video(str(tmp_path / "audio.mp4"), 4)
    image = tmp_path / "still.png"
    make_image().save(image)  # FFmpeg opens a PNG as a one-frame video
    assert len(load_video(str(image), 2)) == 2
    with pytest.raises(FileNotFoundError, match="nope.mkv not found"):
        load_video(str(tmp_path / "nope.mkv"), 4)


def test_truncated_video_keeps_the_frames_it_has(tmp_path):
    """ffv1 in Matroska, cut after 60% of its bytes: the frames before the cut decode; the
    sampling spreads over those (no crash, no frame from past the end)."""
    whole = _video(tmp_path / "whole.mkv", PALETTE)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    frames = load_video(str(cut), 8)
    colours = _colours(frames)
    assert len(frames) == 8 and colours[0] == RED
    n_decoded = len(set(colours))
    assert 1 < n_decoded < 8 and set(colours) == set(PALETTE[:n_decoded])


def test_huge_video_frames_refused_from_the_header(tmp_path):
    f = _video(tmp_path / "wide.mkv", [RED], size=(MAX_IMAGE_SIDE + 16, 2))
    with pytest.raises(MediaError, match=f"video: {f}: {MAX_IMAGE_SIDE + 16}x2 pixels is too large"):
        load_video(str(f), 4)


def test_video_through_generate(tmp_path):
    """A 3-frame file through generate (the tiny model samples 8 frames, pools 2 by 2)."""
    f = _video(tmp_path / "short.mkv", [RED, GREEN, BLUE])
    m = tiny_model()
    assert isinstance(nvila.generate(m, "Describe the video.", video=str(f), max_new_tokens=2), str)


# ---- checkpoints -------------------------------------------------------------------


def _rewrite_header(file, edit=None, *, header_len=None, raw_header=None, body_len=None):
    """Rewrite a safetensors file: edit(header dict) in place, or a raw header, a lying
    header length, a body cut to body_len bytes."""
    raw = file.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header, body = json.loads(raw[8 : 8 + n]), raw[8 + n :]
    if edit is not None:
        edit(header)
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    body = body if body_len is None else body[:body_len]
    file.write_bytes(struct.pack("<Q", len(h) if header_len is None else header_len) + h + body)


def _first(header) -> dict:
    """The entry of the tensor stored first in the file (offset 0)."""
    return min((v for k, v in header.items() if k != "__metadata__"), key=lambda v: v["data_offsets"][0])


def _last(header) -> dict:
    return max((v for k, v in header.items() if k != "__metadata__"), key=lambda v: v["data_offsets"][1])


@pytest.mark.parametrize(
    "lie",
    [
        pytest.param(dict(edit=lambda h: _last(h).update(data_offsets=[_last(h)["data_offsets"][0], 10**9])),
                     id="offset-past-end"),
        pytest.param(dict(edit=lambda h: _last(h).update(data_offsets=[0, _last(h)["data_offsets"][1]])),
                     id="overlapping"),
        pytest.param(dict(edit=lambda h: _last(h).update(data_offsets=_last(h)["data_offsets"][::-1])),
                     id="reversed-offsets"),
        pytest.param(dict(edit=lambda h: _first(h).update(shape=[s + 1 for s in _first(h)["shape"]])),
                     id="shape-vs-bytes"),
        pytest.param(dict(edit=lambda h: _first(h).update(dtype="F64")), id="dtype-vs-bytes"),
        pytest.param(dict(edit=lambda h: _first(h).update(dtype="Q7")), id="unknown-dtype"),
        pytest.param(dict(edit=lambda h: _first(h).update(shape=[2**40, 2**40])), id="shape-overflow"),
        pytest.param(dict(edit=lambda h: _first(h).update(data_offsets=[-8, 8])), id="negative-offset"),
        pytest.param(dict(header_len=10**12), id="header-length-huge"),
        pytest.param(dict(header_len=10**6), id="header-length-past-file"),
        pytest.param(dict(raw_header=b"{not json]"), id="non-json"),
        pytest.param(dict(body_len=10), id="truncated-body"),
    ],
)  # fmt: skip
def test_lying_safetensors_header(tmp_path, lie):
    """Every lie is caught by the safetensors library before a tensor is read; load
    reports it as CheckpointError naming the file."""
    nvila.save(tiny_model(), str(tmp_path))
    f = tmp_path / "mm_projector" / "model.safetensors"
    _rewrite_header(f, **lie)
    with pytest.raises(nvila.CheckpointError, match=f"checkpoint: {f} is not a valid safetensors file"):
        nvila.load(str(tmp_path))


def test_lying_shard_index(tmp_path):
    """A sharded checkpoint whose index names a tensor its shard lacks, or a shard path
    outside the checkpoint."""
    nvila.save(tiny_model(), str(tmp_path), max_shard_bytes=20_000)
    index = tmp_path / "llm" / "model.safetensors.index.json"
    d = json.loads(index.read_text())
    shards = sorted(set(d["weight_map"].values()))
    good = dict(d["weight_map"])
    d["weight_map"]["model.norm.weight"] = next(s for s in shards if s != good["model.norm.weight"])
    index.write_text(json.dumps(d))
    with pytest.raises(nvila.CheckpointError, match="cannot read model.norm.weight"):
        nvila.load(str(tmp_path))
    outside = tmp_path / "elsewhere.safetensors"
    save_file({"x": torch.ones(1)}, str(outside))
    d["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors"
    index.write_text(json.dumps(d))
    with pytest.raises(nvila.CheckpointError, match="lists shard '../elsewhere.safetensors', expected a file name"):
        nvila.load(str(tmp_path))


@pytest.mark.parametrize(
    "target, content, match",
    [
        ("config.json", b"{not json", "config.json is not valid JSON"),
        ("llm/config.json", b"[1, 2]", "must hold a JSON object, got list"),
        ("vision_tower/config.json", b"\xff\xfe\x00", "is not valid JSON"),
        ("llm/tokenizer.json", b"{}", "tokenizer.json is not a usable tokenizer"),
        ("llm/tokenizer.json", b"garbage", "tokenizer.json is not a usable tokenizer"),
    ],
)
def test_bad_json_files(tmp_path, target, content, match):
    nvila.save(tiny_model(), str(tmp_path))
    (tmp_path / target).write_bytes(content)
    with pytest.raises(nvila.CheckpointError, match=match):
        nvila.load(str(tmp_path))


def test_integer_tensor_refused(tmp_path):
    """A tensor of the right shape but an integer dtype is not silently cast to float."""
    nvila.save(tiny_model(), str(tmp_path))
    f = tmp_path / "llm" / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(f), framework="pt") as h:
        tensors = {k: h.get_tensor(k) for k in h.keys()}
    tensors["model.norm.weight"] = torch.ones_like(tensors["model.norm.weight"], dtype=torch.int32)
    save_file(tensors, str(f))
    with pytest.raises(nvila.CheckpointError, match="llm/model.norm.weight has dtype torch.int32"):
        nvila.load(str(tmp_path))


# ---- memory ------------------------------------------------------------------------


def test_generate_in_a_loop_does_not_grow_memory(tmp_path):
    """80 generate calls of the shipped tiny model with a 320x240 image file: resident
    memory grows by less than 8 MB after a warm-up of 15 calls (measured with 150 calls:
    under 0.1 MB). A leak of the decoded image (230 KB) or of the 14 tiles (130 KB) per
    call would be 10-18 MB. One torch thread: seconds (2 threads on a loaded 2-core machine: 25x slower)."""
    model = nvila.load(nvila.TINY_MODEL, dtype="fp32")
    f = tmp_path / "im.png"
    make_image(320, 240).save(f)

    def once():
        return nvila.generate(model, "What colour is the square?", images=[str(f)], max_new_tokens=3)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(15):
            once()
        gc.collect()
        before = rss_bytes()
        for _ in range(80):
            once()
        gc.collect()
        grown = rss_bytes() - before
    finally:
        torch.set_num_threads(threads)
    assert grown < 8 * 2**20, f"resident memory grew by {grown / 2**20:.1f} MB over 80 generate calls"


def test_size_caps_are_consistent_with_the_kernels():
    """The side cap is multiscale_tile's; the pixel cap is under Pillow's bomb warning."""
    from nvila_kernels.functional import TILE_MAX_SIDE

    assert MAX_IMAGE_SIDE == TILE_MAX_SIDE == 16384
    assert MAX_IMAGE_PIXELS == 2**26 < Image.MAX_IMAGE_PIXELS


def test_cli_reports_bad_media_in_one_line(tmp_path, capsys):
    """`nvila --image bad.png`: exit status 2 and one line naming the file, no traceback."""
    from nvila.cli import main

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["--image", str(bad), "--prompt", "What is it?", "--max-new-tokens", "2"]) == 2
    err = capsys.readouterr().err
    why = f"corrupt or not an image (UnidentifiedImageError: cannot identify image file '{bad}')"
    assert err == f"nvila: error: image: {bad}: {why}\n"
