"""Uploaded images (publishing/media.py): every image is built here with Pillow."""
import io
import struct
import zlib

import pytest
from PIL import ExifTags, Image

from publishing.media import (
    ImageLimits, ImageRejected, image_facts, open_checked, sanitize_image, shrink_to_fit, to_jpeg,
)

RED, BLUE = (255, 0, 0), (0, 0, 255)
SECRETS = (b"SpyCam-9000", b"SECRET-XMP", b"SECRET-COMMENT", b"SECRET-TEXT")


def encode(image, fmt, **options):
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def halves(width=40, height=20):
    """Left half red, right half blue: after a rotation it is obvious where each half went."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image


def spy_exif(orientation=1):
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SpyCam-9000"
    exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 24.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (2.0, 21.0, 8.0)
    return exif


def noise(size):
    return Image.effect_noise(size, 90).convert("RGB")


def png_declaring(width, height):
    """A few dozen bytes whose header claims width × height pixels: a decompression bomb."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def reopened(result):
    return Image.open(io.BytesIO(result.data))


# --- Privacy ---------------------------------------------------------------------------------
def test_gps_camera_xmp_and_comments_are_gone_from_a_jpeg():
    data = encode(halves(), "JPEG", exif=spy_exif(), xmp=b"<x:xmpmeta>SECRET-XMP</x:xmpmeta>",
                  comment=b"SECRET-COMMENT")
    assert all(secret in data for secret in SECRETS[:3])  # the test image really carries them
    clean = sanitize_image(data)
    assert clean.mime_type == "image/jpeg"
    assert not any(secret in clean.data for secret in SECRETS)
    exif = reopened(clean).getexif()
    assert not exif.get_ifd(ExifTags.IFD.GPSInfo)
    assert ExifTags.Base.Make not in exif


def test_metadata_is_gone_from_png_webp_and_gif_too():
    from PIL.PngImagePlugin import PngInfo
    text = PngInfo()
    text.add_text("Comment", "SECRET-TEXT")
    uploads = {
        "PNG": encode(halves(), "PNG", exif=spy_exif(), pnginfo=text),
        "WEBP": encode(halves(), "WEBP", exif=spy_exif(), xmp=b"<x:xmpmeta>SECRET-XMP</x:xmpmeta>"),
        "GIF": encode(halves().convert("P"), "GIF", comment=b"SECRET-COMMENT"),
    }
    for fmt, data in uploads.items():
        assert any(secret in data for secret in SECRETS), fmt
        clean = sanitize_image(data)
        assert reopened(clean).format == fmt
        assert not any(secret in clean.data for secret in SECRETS), fmt


def test_every_copy_is_stripped_not_only_the_stored_one():
    data = encode(noise((600, 400)), "JPEG", exif=spy_exif(), comment=b"SECRET-COMMENT")
    for copy in (to_jpeg(data), shrink_to_fit(data, max_bytes=20_000)):
        assert not any(secret in copy.data for secret in SECRETS)


def test_orientation_is_applied_to_the_pixels_then_dropped():
    # Orientation 6: the camera was turned; viewers rotate the stored pixels 90° clockwise.
    data = encode(halves(40, 20), "JPEG", exif=spy_exif(orientation=6), quality=95)
    clean = reopened(sanitize_image(data))
    assert clean.size == (20, 40)                        # now portrait, as the photo was taken
    top, bottom = clean.getpixel((10, 5)), clean.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60                  # the left (red) half went to the top
    assert bottom[2] > 200 and bottom[0] < 60
    assert clean.getexif().get(ExifTags.Base.Orientation) in (None, 1)
    assert image_facts(data)["width"] == 20 and image_facts(data)["height"] == 40


# --- What is refused, and how it says so --------------------------------------------------------
def test_a_text_file_named_jpg_is_refused_by_its_content():
    with pytest.raises(ImageRejected) as refused:
        sanitize_image(b"This is a shopping list, not a photo.\n")
    assert refused.value.rule == "unsupported_type"
    assert "JPEG, PNG, WebP and GIF" in str(refused.value)


@pytest.mark.parametrize("data, kind", [
    (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "SVG"),
    (encode(halves(), "TIFF"), "TIFF"),
    (encode(halves(), "BMP"), "BMP"),
])
def test_other_formats_are_refused_naming_their_type(data, kind):
    with pytest.raises(ImageRejected) as refused:
        sanitize_image(data)
    assert refused.value.rule == "unsupported_type"
    assert str(refused.value) == f"{kind} files are not accepted: Hayon takes JPEG, PNG, WebP and GIF images."


def test_a_truncated_jpeg_is_refused_not_stored_half_grey():
    data = encode(noise((400, 300)), "JPEG", quality=90)
    with pytest.raises(ImageRejected) as refused:
        sanitize_image(data[: len(data) // 2])
    assert refused.value.rule == "damaged"
    assert str(refused.value) == "This JPEG image is damaged or incomplete and cannot be read."


def test_a_png_with_a_broken_checksum_is_refused():
    data = bytearray(encode(noise((64, 64)), "PNG"))
    data[60] ^= 0xFF  # inside the IDAT data: its CRC no longer matches
    with pytest.raises(ImageRejected) as refused:
        sanitize_image(bytes(data))
    assert refused.value.rule == "damaged"


@pytest.mark.parametrize("width, height", [(8_000, 8_000), (20_000, 20_000), (1, 60_000_000)])
def test_a_decompression_bomb_is_refused_before_decoding(width, height, monkeypatch):
    # 64 MP is under Pillow's own default limit (89 MP), 400 MP above twice it: ours decides both,
    # even when something in the process has switched Pillow's global check off.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    data = png_declaring(width, height)
    assert len(data) < 200
    with pytest.raises(ImageRejected) as refused:
        image_facts(data)
    assert refused.value.rule == "too_many_pixels"
    assert f"{width:,} × {height:,} pixels" in str(refused.value)
    assert "the limit is 50 megapixels" in str(refused.value)


def test_pillows_own_bomb_error_also_becomes_a_clear_refusal():
    with pytest.raises(ImageRejected) as refused:  # Pillow's default limit raises first here
        image_facts(png_declaring(30_000, 30_000))
    assert refused.value.rule == "too_many_pixels"
    assert "50 megapixels" in str(refused.value)


def test_a_file_over_20_mb_is_refused_with_the_numbers():
    with pytest.raises(ImageRejected) as refused:
        sanitize_image(b"\xff\xd8\xff" + b"\x00" * (21 * 1024 * 1024))
    assert refused.value.rule == "file_too_large"
    assert str(refused.value) == "This file is 21.0 MB, over the 20 MB limit."


def test_limits_are_explicit_parameters():
    data = encode(halves(100, 100), "PNG")
    with pytest.raises(ImageRejected):
        open_checked(data, limits=ImageLimits(max_pixels=9_999))
    with pytest.raises(ImageRejected):
        open_checked(data, limits=ImageLimits(max_bytes=len(data) - 1))
    assert open_checked(data, limits=ImageLimits(max_pixels=10_000)).size == (100, 100)


# --- Copies per platform -----------------------------------------------------------------------
def test_jpeg_copy_puts_transparency_on_white():
    logo = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    logo.paste((255, 0, 0, 255), (40, 40, 60, 60))
    copy = to_jpeg(encode(logo, "PNG"))
    image = reopened(copy)
    assert (copy.mime_type, image.format, image.mode) == ("image/jpeg", "JPEG", "RGB")
    corner, middle = image.getpixel((0, 0)), image.getpixel((50, 50))
    assert min(corner) > 240                       # transparent became white, not black
    assert middle[0] > 200 and middle[1] < 60


def test_an_animated_gif_keeps_its_animation_but_the_jpeg_copy_is_its_first_frame():
    frames = [Image.new("RGB", (30, 30), RED), Image.new("RGB", (30, 30), BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=[200, 300], loop=0,
                  comment=b"SECRET-COMMENT")
    assert SECRETS[2] in data
    clean = sanitize_image(data)
    stored = reopened(clean)
    assert stored.n_frames == 2
    assert SECRETS[2] not in clean.data
    first = reopened(to_jpeg(data)).getpixel((15, 15))
    assert first[0] > 200 and first[2] < 60


def test_a_large_image_is_shrunk_under_the_bluesky_cap_never_refused():
    data = encode(noise((1800, 1200)), "PNG")        # ~6 MB of incompressible pixels
    assert len(data) > 5_000_000
    small = shrink_to_fit(data, max_bytes=1_000_000)
    image = reopened(small)
    assert small.size <= 1_000_000
    assert (small.mime_type, image.format) == ("image/jpeg", "JPEG")
    assert abs(image.width / image.height - 1.5) < 0.01   # aspect ratio kept
    assert (small.width, small.height) == image.size


def test_an_image_already_under_the_cap_keeps_its_format():
    data = encode(halves(), "PNG")
    small = shrink_to_fit(data, max_bytes=1_000_000)
    assert small.mime_type == "image/png" and reopened(small).size == (40, 20)


def test_facts_are_the_api_shape():
    data = encode(halves(64, 48), "WEBP")
    assert image_facts(data) == {"mimeType": "image/webp", "width": 64, "height": 48, "size": len(data)}
    clean = sanitize_image(data)
    assert clean.facts() == {"mimeType": "image/webp", "width": 64, "height": 48, "size": len(clean.data)}


@pytest.mark.filterwarnings("ignore:Truncated File Read", "ignore:Tag data larger than file", "ignore:Corrupt EXIF")
def test_damaged_files_of_every_kind_get_a_clear_refusal_never_a_crash():
    """Random byte flips, cuts and insertions in valid files: each is either read or refused with
    ImageRejected (a message for the person), never another exception (a 500 page)."""
    import random
    rnd = random.Random(14)
    base = noise((48, 32))
    seeds = [encode(base, "JPEG", exif=spy_exif(orientation=6)), encode(base, "PNG"),
             encode(base, "WEBP"), encode(base.convert("P"), "GIF"),
             encode(base, "GIF", save_all=True, append_images=[base.rotate(90)])]
    for _ in range(150):
        data = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 4)):
            at = rnd.randrange(len(data))
            if rnd.random() < 0.7:
                data[at] = rnd.randrange(256)
            else:
                del data[at:at + rnd.randint(1, 40)]
        try:
            sanitize_image(bytes(data))
        except ImageRejected as refused:
            assert refused.rule in ("damaged", "unsupported_type", "too_many_pixels", "too_many_frames")
            assert str(refused).endswith(".")


def test_a_16_bit_greyscale_png_keeps_its_tones():
    data = encode(Image.new("I;16", (10, 10), 40_000), "PNG")   # 61% grey in 16 bits
    for copy in (sanitize_image(data), to_jpeg(data)):
        grey = reopened(copy).convert("L").getpixel((5, 5))
        assert 145 < grey < 165                                  # not clipped to white


def test_a_colour_profile_is_applied_then_dropped():
    from PIL import ImageCms
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(halves(), "JPEG", icc_profile=srgb, quality=95)
    assert Image.open(io.BytesIO(data)).info.get("icc_profile")
    clean = reopened(sanitize_image(data))
    assert "icc_profile" not in clean.info
    assert clean.getpixel((5, 10))[0] > 200                      # red stays red
