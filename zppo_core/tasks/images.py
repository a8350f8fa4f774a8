"""Images of questions: where they come from, how they are checked, decoded and fitted into the pixel bounds.

A question's image (`Question.images`) is one of

* a local file path (JSONL training data: resolved against the data file's folder, then `data.image_dir`);
* a ``data:`` URI holding the encoded image (the synthetic visual families' PNGs; decoded images in data files),
  a plain string, so questions stay JSON-able and a checkpointed replay buffer keeps its images;
* a decoded PIL image (programmatic use; `to_data_uri` turns it into the checkpointable form).

`load_image` decodes any of them into RGB and resizes it, keeping the aspect ratio, so that width × height lies in
the pixel bounds: the paper's 256×32×32 .. 1280×32×32 by default (`data.min_pixels` / `data.max_pixels`). The
model's processor then snaps the size to its patch grid. `image_paths` reads a data file's `image` / `images`
field and checks every image (exists, is an image file) so that bad data fails at load time with the file and
line, before any compute.

No torch here; Pillow only.
"""

from __future__ import annotations

import base64
import binascii
import io
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

__all__ = ["MAX_PIXELS", "MIN_PIXELS", "ImageError", "blank_like", "fit_pixels", "image_paths", "image_size",
           "load_image", "to_data_uri"]

MIN_PIXELS = 256 * 32 * 32
MAX_PIXELS = 1280 * 32 * 32


class ImageError(ValueError):
    """An image that cannot be used; the message says why (callers add the file and line)."""


def fit_pixels(image, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS):
    """`image` as RGB, resized (aspect ratio kept) so that width × height lies in [min_pixels, max_pixels]."""
    from PIL import Image

    img = image.convert("RGB") if image.mode != "RGB" else image
    w, h = img.size
    area = w * h
    if area == 0 or min_pixels <= area <= max_pixels:
        return img
    scale = ((max_pixels if area > max_pixels else min_pixels) / area) ** 0.5
    nw, nh = max(1, int(w * scale)), max(1, int(h * scale))
    if area < min_pixels:  # rounding down may leave it just below the floor
        while nw * nh < min_pixels:
            nw, nh = (nw + 1, nh) if nw * h <= nh * w else (nw, nh + 1)
    return img.resize((nw, nh), Image.Resampling.BICUBIC)


def to_data_uri(image, fmt: str = "PNG") -> str:
    """A PIL image as a ``data:image/<fmt>;base64,...`` string (lossless PNG by default)."""
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _open(src: Any):
    """The PIL image behind a path, a data URI or a PIL image (not yet decoded: PIL reads lazily)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(src, Image.Image):
        return src
    if not isinstance(src, str):
        raise ImageError(f"an image must be a path, a data: URI or a PIL image, not {type(src).__name__}")
    try:
        if src.startswith("data:"):
            head, _, payload = src.partition(",")
            if ";base64" not in head:
                raise ImageError("a data: URI image must be base64-encoded (data:image/png;base64,...)")
            return Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
        return Image.open(src)
    except FileNotFoundError:
        raise ImageError(f"image file {src} does not exist") from None
    except IsADirectoryError:
        raise ImageError(f"image path {src} is a directory, not an image file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{_short(src)} is not a readable image (unknown or corrupt format)") from None
    except (binascii.Error, ValueError) as err:
        raise ImageError(f"{_short(src)} is not a valid base64 image ({err})") from None
    except OSError as err:
        raise ImageError(f"{_short(src)} cannot be read ({err})") from None


def _short(src: str) -> str:
    return src if len(src) <= 80 or not src.startswith("data:") else src[:40] + "..."


def image_size(src: Any) -> tuple[int, int]:
    """(width, height) from the image's header (cheap: nothing is decoded); ImageError when it is no image."""
    return tuple(_open(src).size)  # type: ignore[return-value]


@lru_cache(maxsize=256)
def _decoded(src: str, min_pixels: int, max_pixels: int):
    img = _open(src)
    try:
        img.load()
    except (OSError, ValueError) as err:  # truncated or corrupt body behind a valid header
        raise ImageError(f"{_short(src)} is a corrupt image ({err})") from None
    return fit_pixels(img, min_pixels, max_pixels)


def load_image(src: Any, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS):
    """Decoded RGB image fitted into [min_pixels, max_pixels] (string sources are cached: replayed questions and
    a question's plain, BCQ, NCQ and teacher prompts decode it once)."""
    from PIL import Image

    if isinstance(src, Image.Image):
        return fit_pixels(src, min_pixels, max_pixels)
    return _decoded(src, int(min_pixels), int(max_pixels))


def blank_like(image):
    """A white image of the same size (the blank-image control: the question without its visual content)."""
    from PIL import Image

    return Image.new("RGB", image.size, (255, 255, 255))


def image_paths(value: Any, bases: Iterable[Path], where: str, fld: str) -> tuple[str, ...]:
    """A data file's `image`/`images` field -> the images as absolute paths or data URIs, each checked to be a
    readable image. `bases`: folders a relative path is looked up in, in order. `where` ("file:line") and `fld`
    name the place in errors; raises ImageError with a one-line message naming both and the fix."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    if not isinstance(value, (str, list)) or not all(isinstance(v, str) for v in items):
        bad = value if not isinstance(value, list) else next(v for v in items if not isinstance(v, str))
        raise ImageError(f"{where}: field {fld!r} must be an image path (a string) or a list of paths, not "
                         f"{type(bad).__name__} {str(bad)[:40]!r}; fix the line")
    bases = [Path(b) for b in bases]
    out = []
    for v in items:
        s = v.strip()
        if not s:
            raise ImageError(f"{where}: field {fld!r} holds an empty image path; fix or remove it")
        if s.startswith("data:"):
            src = s
        else:
            p = Path(s).expanduser()
            cands = [p] if p.is_absolute() else [b / p for b in bases]
            found = next((c for c in cands if c.is_file()), None)
            if found is None:
                looked = ", ".join(str(c.parent) for c in cands) or "nowhere"
                raise ImageError(f"{where}: image {s!r} (field {fld!r}) not found (looked in {looked}); copy the "
                                 "image there or --set data.image_dir=FOLDER")
            src = str(found.resolve())
        try:
            w, h = image_size(src)
        except ImageError as err:
            raise ImageError(f"{where}: field {fld!r}: {err}; replace the file or drop the line") from None
        if w * h == 0:
            raise ImageError(f"{where}: field {fld!r}: image {_short(s)} is empty (0 pixels); replace it")
        out.append(src)
    return tuple(out)
