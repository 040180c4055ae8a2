"""A small PNG codec for what Pillow lacks: 16-bit RGB(A) images, read and written.

Reading handles non-interlaced greyscale (type 0), RGB (2), grey + alpha (4) and RGBA (6)
at 8 or 16 bits per sample, checks every chunk's CRC, inflates IDAT with a bounded output
size (a zlib bomb cannot allocate more than the header promises), and undoes the five
row filters (PNG spec, section 9). Colour chunks ``iCCP``, ``sRGB``, ``gAMA``, ``cHRM`` and
the ``eXIf`` orientation are returned for the caller to interpret. Writing produces 8- or
16-bit RGB with filter type Up and zlib level 6, and an ``iCCP`` chunk.

Errors are :class:`~monet_cli.errors.InputError` naming the file and the chunk or field.

References
----------
- Portable Network Graphics (PNG) Specification (Third Edition), W3C, 2025.
- ISO/IEC 15948:2004, the same format as an international standard.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from monet_cli.errors import InputError

__all__ = ["PngData", "SIGNATURE", "read_header", "read_png", "write_png"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type → samples per pixel (palette 3 not handled)
_MAX_CHUNK = 2**31 - 1
_BLOCK_BYTES = 4 << 20  # uncompressed bytes per compression job of the writer


@dataclass
class PngData:
    """What :func:`read_png` found: the pixels and the colour chunks, uninterpreted.

    ``pixels`` is (H, W, C) native-endian uint8 or uint16 with C = 1, 2, 3 or 4 as stored.
    ``gamma`` is the ``gAMA`` value (e.g. 0.45455: encoded = linear ** gamma); ``chromaticity``
    the ``cHRM`` (wx, wy, rx, ry, gx, gy, bx, by); ``orientation`` the EXIF tag 274 of an
    ``eXIf`` chunk (1 when absent).
    """

    pixels: np.ndarray
    bit_depth: int
    color_type: int
    icc_profile: bytes | None = None
    srgb: bool = False
    gamma: float | None = None
    chromaticity: tuple[float, ...] | None = None
    orientation: int = 1


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    color_type: int
    interlace: int


def _parse_ihdr(data: bytes, path) -> PngHeader:
    if len(data) < 33 or data[:8] != SIGNATURE:
        raise InputError("not a PNG file (bad signature)", path=path)
    length, typ = struct.unpack_from(">I4s", data, 8)
    if typ != b"IHDR" or length != 13:
        raise InputError("corrupt PNG: the first chunk is not a 13-byte IHDR", path=path)
    w, h, depth, ctype, comp, filt, inter = struct.unpack_from(">IIBBBBB", data, 16)
    if zlib.crc32(data[12:29]) != struct.unpack_from(">I", data, 29)[0]:
        raise InputError("corrupt PNG: CRC mismatch in chunk 'IHDR'", path=path)
    if w == 0 or h == 0 or w > _MAX_CHUNK or h > _MAX_CHUNK:
        raise InputError(f"corrupt PNG: IHDR size {w}×{h}", path=path)
    if comp != 0 or filt != 0 or inter not in (0, 1):
        raise InputError(f"corrupt PNG: IHDR compression {comp}, filter {filt}, interlace {inter}", path=path)
    return PngHeader(w, h, depth, ctype, inter)


def read_header(path) -> PngHeader:
    """The IHDR fields of the PNG at ``path`` (reads 33 bytes)."""
    with open(path, "rb") as f:
        return _parse_ihdr(f.read(33), path)


@njit(cache=True, nogil=True)
def _unfilter(raw, bpp, out):  # pragma: no cover - compiled
    """Undo the row filters (PNG spec, 9.2-9.4) of ``raw`` (H, 1 + stride) into ``out`` (H, stride).

    One branch per row, then a tight loop per filter type; the row above the first is zeros.
    Returns -1, or the index of the first row with an unknown filter type.
    """
    h, n = raw.shape
    stride = n - 1
    for y in range(h):
        f = raw[y, 0]
        if f == 0 or (f == 2 and y == 0):
            for x in range(stride):
                out[y, x] = raw[y, x + 1]
        elif f == 1 or (f == 3 and y == 0):
            for x in range(min(bpp, stride)):
                out[y, x] = raw[y, x + 1]
            if f == 1:
                for x in range(bpp, stride):
                    out[y, x] = (np.int32(raw[y, x + 1]) + np.int32(out[y, x - bpp])) & 255
            else:
                for x in range(bpp, stride):
                    out[y, x] = (np.int32(raw[y, x + 1]) + (np.int32(out[y, x - bpp]) >> 1)) & 255
        elif f == 2:
            for x in range(stride):
                out[y, x] = (np.int32(raw[y, x + 1]) + np.int32(out[y - 1, x])) & 255
        elif f == 3:
            for x in range(min(bpp, stride)):
                out[y, x] = (np.int32(raw[y, x + 1]) + (np.int32(out[y - 1, x]) >> 1)) & 255
            for x in range(bpp, stride):
                s = np.int32(out[y, x - bpp]) + np.int32(out[y - 1, x])
                out[y, x] = (np.int32(raw[y, x + 1]) + (s >> 1)) & 255
        elif f == 4:
            for x in range(stride):
                a = np.int32(out[y, x - bpp]) if x >= bpp else np.int32(0)
                b = np.int32(out[y - 1, x]) if y > 0 else np.int32(0)
                c = np.int32(out[y - 1, x - bpp]) if (x >= bpp and y > 0) else np.int32(0)
                p = a + b - c
                pa = abs(p - a)
                pb = abs(p - b)
                pc = abs(p - c)
                if pa <= pb and pa <= pc:
                    pred = a
                elif pb <= pc:
                    pred = b
                else:
                    pred = c
                out[y, x] = (np.int32(raw[y, x + 1]) + pred) & 255
        else:
            return y
    return -1


def read_png(path, *, max_pixels: int | None = None) -> PngData:
    """Decode the PNG at ``path``.

    Parameters
    ----------
    path
        The file.
    max_pixels
        Refuse (before inflating anything) images whose IHDR says more pixels than this.

    Returns
    -------
    PngData
        Pixels (H, W, C) in native byte order, 8-bit as uint8 and 16-bit as uint16, and the
        colour chunks.

    Raises
    ------
    InputError
        Bad signature, a CRC mismatch, a truncated file, an unsupported colour type or bit
        depth (palette, 1/2/4-bit), an interlaced 16-bit image, too many pixels, or corrupt
        compressed data.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", path=path) from None
    hdr = _parse_ihdr(data, path)
    if max_pixels is not None and hdr.width * hdr.height > max_pixels:
        raise InputError(f"image is {hdr.width}×{hdr.height} = {hdr.width * hdr.height:,} pixels, more than the "
                         f"limit of {max_pixels:,} (set MONET_MAX_PIXELS to raise it)", path=path)
    if hdr.color_type not in _CHANNELS or hdr.bit_depth not in (8, 16):
        raise InputError(f"PNG colour type {hdr.color_type} at {hdr.bit_depth} bits is not supported by the "
                         "16-bit reader (palette and 1/2/4-bit images are read through Pillow)", path=path)
    if hdr.interlace:
        raise InputError(f"interlaced {hdr.bit_depth}-bit PNG not supported; re-save it without interlacing",
                         path=path)
    out = PngData(np.empty(0), hdr.bit_depth, hdr.color_type)
    idat: list[memoryview] = []
    view = memoryview(data)
    pos, seen_iend = 8, False
    while pos < len(data):
        if pos + 12 > len(data):
            break
        length, typ = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if length > _MAX_CHUNK or end > len(data):
            raise InputError(f"PNG is truncated (chunk {typ.decode('latin-1')!r} at byte {pos} runs past the "
                             f"end of the {len(data)}-byte file)", path=path)
        body = view[pos + 8:pos + 8 + length]
        if zlib.crc32(view[pos + 4:pos + 8 + length]) != struct.unpack_from(">I", data, end - 4)[0]:
            raise InputError(f"corrupt PNG: CRC mismatch in chunk {typ.decode('latin-1')!r} at byte {pos}",
                             path=path)
        pos = end
        if typ == b"IDAT":
            idat.append(body)
        elif typ == b"IEND":
            seen_iend = True
            break
        elif typ == b"iCCP":
            out.icc_profile = _iccp(bytes(body), path)
        elif typ == b"sRGB":
            out.srgb = True
        elif typ == b"gAMA" and length == 4:
            g = struct.unpack(">I", body)[0]
            out.gamma = g / 100000.0 if g else None
        elif typ == b"cHRM" and length == 32:
            out.chromaticity = tuple(v / 100000.0 for v in struct.unpack(">8I", body))
        elif typ == b"eXIf":
            out.orientation = _exif_orientation(bytes(body))
        elif typ not in (b"IHDR", b"PLTE") and not (typ[0] & 0x20):
            raise InputError(f"PNG has an unknown critical chunk {typ.decode('latin-1')!r}", path=path)
    if not idat:
        raise InputError("PNG is truncated or corrupt: no image data (IDAT)", path=path)
    channels = _CHANNELS[hdr.color_type]
    bpp = channels * hdr.bit_depth // 8
    stride = hdr.width * bpp
    expected = hdr.height * (stride + 1)
    raw = np.empty(expected, dtype=np.uint8)
    got = 0
    d = zlib.decompressobj()
    try:
        for chunk in idat:
            pending = chunk
            # max_length bounds the output: a zlib bomb cannot inflate past what IHDR promises.
            while pending and got < expected:
                piece = d.decompress(pending, expected - got)
                raw[got:got + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
                got += len(piece)
                pending = d.unconsumed_tail
            if got >= expected:
                break
    except zlib.error as e:
        raise InputError(f"corrupt PNG: compressed image data is damaged ({e})", path=path) from None
    if got < expected:
        what = "truncated" if not seen_iend else "corrupt"
        raise InputError(f"PNG is {what}: image data has {got:,} of {expected:,} bytes", path=path)
    raw = raw.reshape(hdr.height, stride + 1)
    rows = np.empty((hdr.height, stride), dtype=np.uint8)
    bad = _unfilter(raw, bpp, rows)
    if bad >= 0:
        raise InputError(f"corrupt PNG: unknown filter type {int(raw[bad, 0])} on row {bad}", path=path)
    del raw
    if hdr.bit_depth == 16:
        px = rows.view(np.uint16)
        if sys.byteorder == "little":
            px.byteswap(inplace=True)  # PNG samples are big-endian
        px = px.reshape(hdr.height, hdr.width, channels)
    else:
        px = rows.reshape(hdr.height, hdr.width, channels)
    out.pixels = px
    return out


def _iccp(body: bytes, path) -> bytes:
    """The profile of an iCCP chunk: name (1-79 bytes), NUL, method 0, zlib stream."""
    nul = body.find(b"\0")
    if not 1 <= nul <= 79 or len(body) < nul + 2 or body[nul + 1] != 0:
        raise InputError("corrupt PNG: malformed iCCP chunk", path=path)
    try:
        d = zlib.decompressobj()
        prof = d.decompress(body[nul + 2:], 64 * 2**20)
    except zlib.error as e:
        raise InputError(f"corrupt PNG: iCCP profile does not inflate ({e})", path=path) from None
    return prof


def _exif_orientation(exif: bytes) -> int:
    """EXIF tag 274 (Orientation) of IFD0 in a TIFF-structured EXIF block, or 1."""
    try:
        if exif[:4] in (b"II*\0", b"MM\0*"):
            e = "<" if exif[:2] == b"II" else ">"
            ifd = struct.unpack_from(e + "I", exif, 4)[0]
            n = struct.unpack_from(e + "H", exif, ifd)[0]
            for i in range(n):
                tag, typ, count = struct.unpack_from(e + "HHI", exif, ifd + 2 + 12 * i)
                if tag == 274 and typ == 3:
                    v = struct.unpack_from(e + "H", exif, ifd + 2 + 12 * i + 8)[0]
                    return v if 1 <= v <= 8 else 1
    except struct.error:
        pass
    return 1


def _chunk(typ: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + typ + body + struct.pack(">I", zlib.crc32(typ + body))


def _filtered_blocks(px: np.ndarray, stride: int, block_rows: int):
    """Rows of ``px`` as PNG scanlines with filter type Up (2), ``block_rows`` rows at a time."""
    prev_last = np.zeros(stride, dtype=np.uint8)
    for y0 in range(0, px.shape[0], block_rows):
        rows = px[y0:y0 + block_rows]
        if rows.dtype == np.uint16:
            rows = rows.astype(">u2")  # PNG samples are big-endian
        b = np.ascontiguousarray(rows).view(np.uint8).reshape(-1, stride)
        filt = np.empty((b.shape[0], stride + 1), dtype=np.uint8)
        filt[:, 0] = 2
        np.subtract(b[1:], b[:-1], out=filt[1:, 1:])
        np.subtract(b[0], prev_last, out=filt[0, 1:])
        prev_last = b[-1].copy()
        yield filt.reshape(-1)


def _deflate(blocks, level: int, workers: int):
    """One zlib stream (RFC 1950) over ``blocks``, compressed on ``workers`` threads.

    Each block is raw deflate (RFC 1951) primed with the previous block's last 32 KiB as
    dictionary and ended with a sync flush (the last with finish), so the pieces concatenate
    into one valid stream, as pigz does; zlib releases the GIL while it compresses. Adler-32
    of the whole input closes the stream. Yields the compressed pieces in order.
    """
    from concurrent.futures import ThreadPoolExecutor

    def job(data, zdict, last):
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, *([zdict] if zdict else []))
        return c.compress(data) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

    yield b"\x78\x9c"
    adler = 1
    it = iter(blocks)
    cur = next(it, None)
    zdict = b""
    queue = []
    with ThreadPoolExecutor(max_workers=workers) as ex:
        while cur is not None:
            nxt = next(it, None)
            adler = zlib.adler32(cur, adler)
            queue.append(ex.submit(job, cur, zdict, nxt is None))
            zdict = bytes(cur[-32768:])
            cur = nxt
            while len(queue) > 2 * workers:
                yield queue.pop(0).result()
        for fut in queue:
            yield fut.result()
    yield struct.pack(">I", adler & 0xFFFFFFFF)


def write_png(path, pixels: np.ndarray, *, icc_profile: bytes | None = None, level: int = 6,
              workers: int | None = None, chunks: list[tuple[bytes, bytes]] = ()) -> None:
    """Write ``pixels`` (H, W, 3) uint8 or uint16 as an RGB PNG of the same bit depth.

    Rows use filter type Up (2) and zlib ``level``; blocks of about 4 MiB are compressed on
    ``workers`` threads (default: the CPU count, at most 8) and streamed to the file, so
    memory stays at a few blocks. ``icc_profile`` is embedded as an ``iCCP`` chunk named
    "ICC profile". ``chunks``: more ``(type, body)`` chunks written before the image data
    (``eXIf``, ``iTXt``: monet_cli.metadata.png_chunks).
    """
    px = np.asarray(pixels)
    if px.ndim != 3 or px.shape[2] != 3 or px.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png needs (H, W, 3) uint8 or uint16 pixels, got {px.shape} {px.dtype}")
    h, w, _ = px.shape
    depth = 16 if px.dtype == np.uint16 else 8
    stride = w * 3 * depth // 8
    workers = workers or min(os.cpu_count() or 1, 8)
    with open(path, "wb") as f:
        f.write(SIGNATURE)
        f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, 2, 0, 0, 0)))
        if icc_profile:
            f.write(_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile, 9)))
        for typ, body in chunks:
            f.write(_chunk(typ, body))
        pending = bytearray()
        block_rows = max(1, _BLOCK_BYTES // (stride + 1))
        for piece in _deflate(_filtered_blocks(px, stride, block_rows), level, workers):
            pending += piece
            if len(pending) >= 1 << 20:
                f.write(_chunk(b"IDAT", bytes(pending)))
                pending.clear()
        f.write(_chunk(b"IDAT", bytes(pending)))
        f.write(_chunk(b"IEND", b""))
