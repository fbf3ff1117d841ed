"""Media in: images and video files checked and decoded (caps, modes, EXIF, frames
sampled as NVILA does), and the prompt cut into text pieces and media slots (NVILA.md
sections 2, 5 and 6). Tiling is the kernels package's (nvila_kernels.processor, used by
nvila.model); the tokenizer and chat template are in nvila.tokenizer."""

from __future__ import annotations

import bisect
import os
import re
import threading
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

from nvila_kernels.functional import TILE_MAX_SIDE

IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<vila/video>"
_MEDIA = re.compile(f"({re.escape(IMAGE_TOKEN)}|{re.escape(VIDEO_TOKEN)})")


def user_content(text: str, n_images: int = 0, video: bool = False) -> str:
    """Media first, no separator (NVILA.md section 6): "<image><image>What is..."."""
    return (VIDEO_TOKEN if video else "") + IMAGE_TOKEN * n_images + text


def split_media(prompt: str) -> list[str]:
    """The prompt cut at its placeholders: text pieces and the placeholders themselves."""
    return [p for p in _MEDIA.split(prompt) if p]


# ---- pixels ------------------------------------------------------------------------


class MediaError(ValueError):
    """An image or video that cannot be used; the message names the file and the problem."""


# Pixel caps, checked from the file's header before any pixel is decoded. Sides: the cap
# of nvila_kernels.multiscale_tile (it refuses larger images). Pixels: 2^26 = 64 Mpx
# (8192 x 8192, 192 MB of decoded RGB), below Pillow's decompression-bomb threshold
# (Image.MAX_IMAGE_PIXELS, 89.5 Mpx by default), so Pillow never warns about an image we
# accept. Dynamic-S2 resizes every image to at most max_tiles tiles anyway.
MAX_IMAGE_SIDE = TILE_MAX_SIDE
MAX_IMAGE_PIXELS = 1 << 26
# Pillow's truncated-image switch and decompression-bomb warning are process-wide: image
# files are decoded under this lock with truncated files refused (see _decode).
_PIL_LOCK = threading.Lock()
_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def check_size(width: int, height: int, what: str) -> None:
    """Refuse a width x height image or video frame beyond the caps; `what` names it."""
    if width < 1 or height < 1:
        raise MediaError(f"{what}: empty image ({width}x{height})")
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise MediaError(
            f"{what}: {width}x{height} pixels is too large (expected sides <= {MAX_IMAGE_SIDE} "
            f"and width * height <= {MAX_IMAGE_PIXELS})"
        )


def _decode(source, what: str) -> Image.Image:
    """Decode an image file (a path) or a PIL image not yet loaded: size checked from the
    header before decoding, truncated and corrupt files refused whatever
    ImageFile.LOAD_TRUNCATED_IMAGES says, then rotated by its EXIF orientation."""
    with _PIL_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our cap is lower
        load_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            if not isinstance(source, str):
                return _load_checked(source, what)
            with Image.open(source) as im:  # reads the header only
                return _load_checked(im, what)
        except MediaError:
            raise
        except Image.DecompressionBombError as e:
            raise MediaError(f"{what}: too large ({e})") from e
        except Exception as e:  # anything Pillow raises on these bytes: UnidentifiedImageError, OSError, ...
            cut = "truncated" in str(e).replace(str(source), "").lower()  # not a "truncated" in the path
            problem = "truncated" if cut else "corrupt or not an image"
            raise MediaError(f"{what}: {problem} ({type(e).__name__}: {e})") from e
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = load_truncated


def _load_checked(im: Image.Image, what: str) -> Image.Image:
    check_size(im.width, im.height, what)
    im.load()
    return ImageOps.exif_transpose(im)  # a new image (rotated, or a copy)


def to_rgb(im: Image.Image, what: str = "image") -> Image.Image:
    """Any Pillow mode -> 8-bit RGB. Alpha is dropped (the stored colour stays, no
    background blend: NVILA's convert("RGB")); 16-bit gray (I;16*, I) is scaled to 8 bits
    as round(v * 255 / 65535) (Pillow's convert would clip every value above 255);
    float images (F) are refused: their range is undefined."""
    if im.mode in _16BIT_MODES:
        v = np.asarray(im).astype(np.int64).clip(0, 65535)
        v8 = ((v * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(np.repeat(v8[:, :, None], 3, axis=2))
    if im.mode == "F":
        raise MediaError(f"{what}: 32-bit float pixels (mode F) have no defined range; convert to 8-bit first")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")  # the direct convert warns for byte-string transparency
    return im if im.mode == "RGB" else im.convert("RGB")


def load_image(image) -> Image.Image:
    """A path, PIL image or (H, W, 3) uint8 array/tensor -> RGB PIL image. Files and PIL
    images are rotated by their EXIF orientation (ImageOps.exif_transpose, as
    transformers.image_utils.load_image does), then converted by to_rgb. Sizes beyond
    MAX_IMAGE_SIDE / MAX_IMAGE_PIXELS and truncated or corrupt files raise MediaError
    naming the file."""
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image: {path} not found")
        return to_rgb(_decode(path, f"image: {path}"), f"image: {path}")
    if isinstance(image, Image.Image):
        what = f"image: {getattr(image, 'filename', '') or 'PIL image'}"
        return to_rgb(_decode(image, what), what)
    if isinstance(image, torch.Tensor):
        image = image.cpu().numpy()
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        check_size(image.shape[1], image.shape[0], "image: array")
        return Image.fromarray(image)
    raise TypeError(f"image: expected a path, a PIL image or an (H, W, 3) uint8 array, got {type(image).__name__}")


# ---- video -------------------------------------------------------------------------


def frame_indices(
    frame_count: int, n: int, fps: float = 0.0, video_fps: float = 0.0, times: Sequence[float] | None = None
) -> list[int]:
    """NVILA's frame sampling: round(linspace(0, frame_count - 1, n)) (a video with fewer
    than n frames repeats frames, as the official loader does); with fps > 0, timestamps
    t = arange(0, duration, 1/fps)[:n] and, for each, the frame on screen at t: the last
    frame whose presentation time (relative to the first frame) is <= t. times: each
    frame's presentation time in seconds (variable frame rate videos); without it,
    frame i is at i / video_fps, i.e. index int(t * video_fps). duration: the last frame's
    time plus one frame interval (1 / video_fps), frame_count / video_fps at a constant rate."""
    if frame_count < 1:
        raise ValueError(f"video: no frames (frame_count={frame_count})")
    if times is not None and len(times) != frame_count:
        raise ValueError(f"times: expected {frame_count} frame times, got {len(times)}")
    if fps > 0 and (video_fps > 0 or times is not None):
        if times is None:
            rel = [i / video_fps for i in range(frame_count)]
        else:
            rel = [float(t) - float(times[0]) for t in times]
            if np.any(np.diff(rel) < 0):
                raise ValueError("times: frame presentation times are not increasing")
        if video_fps > 0:
            step = 1 / video_fps
        else:
            step = rel[-1] / (frame_count - 1) if frame_count > 1 else 1 / fps
        samples = np.arange(0, rel[-1] + step, 1 / fps)[:n]
        # the frame on screen at t; 1 ns of slack for float timestamps (t = k / fps exactly on a frame)
        return [max(bisect.bisect_right(rel, t + 1e-9) - 1, 0) for t in samples]
    return [int(i) for i in np.round(np.linspace(0, frame_count - 1, n))]


def video_duration(path: str) -> float:
    """A video's duration in seconds as VILA's CLI takes it: frame count / average frame
    rate, from the container (frames counted by demuxing, not decoding, when the stream
    does not store its count)."""
    import av

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video: {path} not found")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise MediaError(f"video: {path}: no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or 0)
            frames = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
    except av.FFmpegError as e:
        raise MediaError(f"video: {path}: corrupt or not a video ({type(e).__name__}: {e})") from e
    if rate <= 0 or frames < 1:
        raise MediaError(f"video: {path}: no frame rate or no frames ({frames} frames at {rate} fps)")
    return frames / rate


def load_video(path: str, n: int, fps: float = 0.0) -> list[Image.Image]:
    """Decode the n frames NVILA samples from the video at `path` (PyAV; see frame_indices),
    as RGB PIL images. Two decoding passes: the first reads every frame's time and size
    (frames larger than MAX_IMAGE_SIDE / MAX_IMAGE_PIXELS refused, the stream's header
    size checked before decoding), the second keeps only the sampled frames, so memory
    does not grow with the video's length. Corrupt files, files without a video stream
    and videos without frames raise MediaError naming the file."""
    import av

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video: {path} not found")
    what = f"video: {path}"
    try:
        times: list[float | None] = []
        with av.open(path) as container:
            if not container.streams.video:
                raise MediaError(f"{what}: no video stream")
            stream = container.streams.video[0]
            if stream.codec_context.width or stream.codec_context.height:
                check_size(stream.codec_context.width, stream.codec_context.height, what)
            video_fps = float(stream.average_rate or 0)
            for frame in container.decode(stream):
                check_size(frame.width, frame.height, f"{what} frame {len(times)}")
                times.append(frame.time)
        if not times:
            raise MediaError(f"{what}: no frames could be decoded")
        known = None if None in times else times
        try:
            idx = frame_indices(len(times), n, fps, video_fps, known)
        except ValueError as e:
            raise MediaError(f"{what}: {e}") from e
        wanted, frames = set(idx), {}
        with av.open(path) as container:
            for i, frame in enumerate(container.decode(container.streams.video[0])):
                if i in wanted:
                    frames[i] = frame.to_image()
                if i >= max(idx):
                    break
    except av.FFmpegError as e:
        raise MediaError(f"{what}: corrupt or not a video ({type(e).__name__}: {e})") from e
    if len(frames) != len(wanted):
        raise MediaError(f"{what}: frames {sorted(wanted - set(frames))} decoded in the first pass, not the second")
    return [frames[i].convert("RGB") for i in idx]
