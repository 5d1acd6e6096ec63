"""Uploaded images: checked by content, stripped of metadata, re-encoded per platform.

Pure functions, bytes in and bytes out; storage comes later. Every function first checks its
input the same way (`open_checked`), so a copy can never be made from an image that was not.

The checks (issue 14, "Media"), with why:
- Content, not name: Pillow identifies the bytes and only JPEG, PNG, WebP and GIF decoders are
  allowed to run (`formats=`), so an SVG, a TIFF or a text file named .jpg is refused by what it
  is. The first bytes are sniffed only to name the refused type in the message.
- Size and pixels: at most 20 MB of file and 50 megapixels. The pixel limit is checked from the
  header before anything is decoded and is ours, not Pillow's process-wide MAX_IMAGE_PIXELS
  (which another module may change); a tiny file declaring 20,000 × 20,000 pixels is a
  decompression bomb and is refused with the numbers. Animations are also bounded in frames.
- Damage: `verify()` and then a full decode, so a truncated or corrupt file is refused instead of
  being stored half grey.
- Privacy: EXIF (GPS, camera serial, dates), XMP and comments are dropped by building the output
  from pixels only; EXIF orientation is applied to the pixels first so the photo stays upright.
  An embedded ICC colour profile is applied (pixels converted to sRGB) and then dropped too: the
  colours of a wide-gamut phone photo survive, the profile's device strings and bytes do not.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageCms, ImageOps, ImageSequence, UnidentifiedImageError

MB = 1024 * 1024
ORIENTATION_TAG = 0x0112
MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
ACCEPTED = "JPEG, PNG, WebP and GIF"


@dataclass(frozen=True)
class ImageLimits:
    """What an upload may be. Defaults are issue 14's: 20 MB, 50 megapixels."""

    max_bytes: int = 20 * MB
    max_pixels: int = 50_000_000
    max_frames: int = 500                  # an animation's frames are each decoded once
    max_animation_pixels: int = 500_000_000  # frames × width × height, bounds decode work


DEFAULT_LIMITS = ImageLimits()


class ImageRejected(ValueError):
    """An upload Hayon will not take; `str(error)` is the message for the person, `rule` a code."""

    def __init__(self, message: str, *, rule: str):
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class ProcessedImage:
    """Bytes ready to store or send, with the facts the API returns about them."""

    data: bytes
    mime_type: str
    width: int
    height: int

    @property
    def size(self) -> int:
        return len(self.data)

    def facts(self) -> dict:
        """`{mimeType, width, height, size}`, the shape of `POST /api/media`'s reply."""
        return {"mimeType": self.mime_type, "width": self.width, "height": self.height, "size": self.size}


# --- Checking ---------------------------------------------------------------------------------
_SIGNATURES = [  # (offset, magic, name): only for naming a refused file in the message
    (0, b"II*\x00", "TIFF"), (0, b"MM\x00*", "TIFF"), (0, b"BM", "BMP"), (0, b"%PDF", "PDF"),
    (0, b"8BPS", "Photoshop (PSD)"), (0, b"\x00\x00\x01\x00", "ICO"), (0, b"\xff\x0a", "JPEG XL"),
    (4, b"ftypheic", "HEIC"), (4, b"ftypheix", "HEIC"), (4, b"ftypmif1", "HEIF"), (4, b"ftypavif", "AVIF"),
    (4, b"ftypqt", "QuickTime video"), (4, b"ftypisom", "MP4 video"), (4, b"ftypmp4", "MP4 video"),
    (0, b"\x00\x00\x00\x0cJXL ", "JPEG XL"), (0, b"PK\x03\x04", "ZIP archive"),
]


def _sniff(data: bytes) -> str | None:
    for offset, magic, name in _SIGNATURES:
        if data[offset:offset + len(magic)] == magic:
            return name
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in head or (head.startswith(b"<?xml") and b"svg" in head):
        return "SVG"
    return None


def _megabytes(size: int) -> str:
    return f"{size / MB:.1f}".removesuffix(".0") + " MB"


def open_checked(data: bytes, *, limits: ImageLimits = DEFAULT_LIMITS) -> Image.Image:
    """Open `data` as an accepted, whole, reasonably sized image, or raise ImageRejected."""
    if len(data) > limits.max_bytes:
        raise ImageRejected(f"This file is {len(data) / MB:.1f} MB, over the {_megabytes(limits.max_bytes)} limit.",
                            rule="file_too_large")
    image = _identify(data, limits)
    fmt = image.format
    try:
        _check_dimensions(image, limits)
        image.verify()  # checksums and structure; the object is unusable afterwards
        image = Image.open(io.BytesIO(data), formats=list(MIME_TYPES))
        for frame in ImageSequence.Iterator(image):
            frame.load()  # a full decode: truncated data raises here
        image.seek(0)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as error:
        raise ImageRejected(f"This image has more than {limits.max_pixels // 1_000_000} megapixels; "
                            "larger images are refused.", rule="too_many_pixels") from error
    except Exception as error:  # noqa: BLE001 -- decoders of hostile bytes raise OSError, SyntaxError,
        # EOFError, ValueError, struct.error, zlib.error...: every one means "cannot be read", never a 500
        raise ImageRejected(f"This {fmt} image is damaged or incomplete and cannot be read.",
                            rule="damaged") from error
    return image


def _identify(data: bytes, limits: ImageLimits) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=list(MIME_TYPES))
    except Image.DecompressionBombError as error:  # Pillow's own, far above ours: same answer
        raise ImageRejected(f"This image has more than {limits.max_pixels // 1_000_000} megapixels; "
                            "larger images are refused.", rule="too_many_pixels") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        kind = _sniff(data)
        if kind:
            message = f"{kind} files are not accepted: Hayon takes {ACCEPTED} images."
        else:
            message = f"This file is not an image Hayon can read ({ACCEPTED} only)."
        raise ImageRejected(message, rule="unsupported_type") from error


def _check_dimensions(image: Image.Image, limits: ImageLimits) -> None:
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageRejected(
            f"This image is {width:,} × {height:,} pixels ({width * height / 1e6:,.0f} megapixels); "
            f"the limit is {limits.max_pixels // 1_000_000} megapixels.", rule="too_many_pixels")
    frames = getattr(image, "n_frames", 1)
    if frames > limits.max_frames or frames * width * height > limits.max_animation_pixels:
        raise ImageRejected(f"This animation has too many frames ({frames:,}) for its size.",
                            rule="too_many_frames")


# --- Producing copies -------------------------------------------------------------------------
def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _pixels_only(image: Image.Image) -> Image.Image:
    """One frame, upright, in sRGB as RGB(A) or L, with no metadata attached (`info` is where
    Pillow's savers look for EXIF, XMP, comments and the ICC profile to copy)."""
    upright = _upright(image)
    if upright.mode.startswith("I"):  # 16-bit greyscale PNG: scale to 8 bits, or it clips to white
        upright = upright.point(lambda value: value * (1 / 256)).convert("L")
    mode = "RGBA" if _has_alpha(upright) else ("L" if upright.mode in ("1", "L") else "RGB")
    clean = _to_srgb(upright, mode) or upright.convert(mode)
    clean = clean.copy() if clean is upright else clean
    clean.info = {}
    return clean


def _upright(image: Image.Image) -> Image.Image:
    """The pixels turned as EXIF orientation says (6: a quarter turn clockwise), or as stored
    when the EXIF block is too broken to read: it is about to be discarded anyway."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 -- malformed EXIF raises a variety of parser errors
        return image


def _orientation(image: Image.Image) -> int | None:
    try:
        return image.getexif().get(ORIENTATION_TAG)
    except Exception:  # noqa: BLE001 -- as above
        return None


def _to_srgb(image: Image.Image, mode: str) -> Image.Image | None:
    icc = image.info.get("icc_profile")
    if not icc or mode == "L" or image.mode not in ("RGB", "RGBA", "CMYK"):
        return None
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None  # a broken profile: keep the pixels as they are


def _encode(image: Image.Image, fmt: str, **options) -> ProcessedImage:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return ProcessedImage(out.getvalue(), MIME_TYPES[fmt], image.width, image.height)


def _save_options(fmt: str) -> dict:
    return {"JPEG": {"quality": 90, "optimize": True}, "PNG": {},
            "WEBP": {"quality": 90}, "GIF": {}}[fmt]


def sanitize_image(data: bytes, *, limits: ImageLimits = DEFAULT_LIMITS) -> ProcessedImage:
    """The copy Hayon stores: same format, orientation applied, EXIF/GPS/XMP/comments removed.

    An animated GIF or WebP stays animated (each frame rebuilt from pixels, frame durations and
    loop count kept).
    """
    image = open_checked(data, limits=limits)
    fmt = image.format
    if getattr(image, "n_frames", 1) > 1 and fmt in ("GIF", "WEBP"):
        return _encode_animation(image, fmt)
    return _encode(_pixels_only(image), fmt, **_save_options(fmt))


def _encode_animation(image: Image.Image, fmt: str) -> ProcessedImage:
    frames, durations = [], []
    for frame in ImageSequence.Iterator(image):
        durations.append(frame.info.get("duration", 100))
        clean = frame.convert("RGBA")
        clean.info = {}
        frames.append(clean)
    out = io.BytesIO()
    options = {"disposal": 2} if fmt == "GIF" else {"quality": 90}
    frames[0].save(out, format=fmt, save_all=True, append_images=frames[1:], duration=durations,
                   loop=image.info.get("loop", 0), **options)
    return ProcessedImage(out.getvalue(), MIME_TYPES[fmt], image.width, image.height)


def _flatten(image: Image.Image) -> Image.Image:
    """RGB for JPEG: transparency composited on white (what a viewer expects behind a logo)."""
    image = _pixels_only(image)
    if image.mode == "RGBA":
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.getchannel("A"))
        return white
    return image.convert("RGB") if image.mode != "RGB" else image


def to_jpeg(data: bytes, *, quality: int = 90, limits: ImageLimits = DEFAULT_LIMITS) -> ProcessedImage:
    """A JPEG copy, for Instagram (its container API takes JPEG only: IG User Media reference).

    Transparency is composited on white; an animated GIF or WebP gives its first frame only
    (Instagram has no animated images). Metadata is stripped and orientation applied.
    """
    image = open_checked(data, limits=limits)
    return _encode(_flatten(image), "JPEG", quality=quality, optimize=True)


JPEG_QUALITIES = (90, 80, 70)  # tried in order at each size; below 70 JPEG artefacts show
SCALE_STEP = 0.75  # then the image shrinks by at least a quarter per side and they run again
MIN_SIDE = 32


def shrink_to_fit(data: bytes, *, max_bytes: int, limits: ImageLimits = DEFAULT_LIMITS) -> ProcessedImage:
    """A copy of at most `max_bytes` (Bluesky: 1,000,000 bytes per image blob; its app resizes
    and re-encodes too). Never fails for a valid image: it returns the first candidate under the
    cap, trying in order the sanitized original (format and animation kept), then JPEG at falling
    quality, then the same at three-quarters the size, down to a thumbnail.

    A transparent image that must become JPEG is composited on white; an animation that is too
    big keeps only its first frame.
    """
    original = sanitize_image(data, limits=limits)
    if original.size <= max_bytes:
        return original
    full = _flatten(open_checked(data, limits=limits))
    scale, best = 1.0, original
    while True:
        size = (max(1, round(full.width * scale)), max(1, round(full.height * scale)))
        candidate_image = full if scale == 1.0 else full.resize(size, Image.Resampling.LANCZOS)
        for quality in JPEG_QUALITIES:
            best = _encode(candidate_image, "JPEG", quality=quality, optimize=True)
            if best.size <= max_bytes:
                return best
        if max(size) <= MIN_SIDE:
            return best  # a 32-pixel JPEG is a few hundred bytes: only a silly cap lands here
        # Bytes grow with pixel count: jump straight to the scale that should fit, or a quarter less.
        scale *= min(SCALE_STEP, (max_bytes / best.size) ** 0.5)


def image_facts(data: bytes, *, limits: ImageLimits = DEFAULT_LIMITS) -> dict:
    """`{mimeType, width, height, size}` of an accepted image as given, after the same checks;
    width and height as displayed (EXIF orientation 5-8 swaps them). For the stored copy use
    `sanitize_image(data).facts()`."""
    image = open_checked(data, limits=limits)
    width, height = image.size
    if _orientation(image) in (5, 6, 7, 8):
        width, height = height, width
    return {"mimeType": MIME_TYPES[image.format], "width": width, "height": height, "size": len(data)}
