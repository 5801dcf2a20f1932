"""Array formats: metadata, codecs, raw array bodies and .npy headers."""

from __future__ import annotations

import gzip
import hashlib
import io
import sys
import warnings
import zlib

import numcodecs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cottoncandy.errors import ArrayFormatError, UnknownCodecError, UnsupportedArrayError
from cottoncandy.format import codecs, compressors
from cottoncandy.format.arrays import (
    byte_view,
    decode_array,
    decode_array_into,
    empty_for,
    encode_array,
    finish_array,
)
from cottoncandy.format.codecs import codec_for_size, get_codec
from cottoncandy.format.compression import DEFAULT_COMPRESSION, normalize_compression
from cottoncandy.format.metadata import ArrayMeta, is_array_metadata
from cottoncandy.format.npyheader import npy_file_size, npy_header

from .helpers import GOLDEN_DIR as GOLDEN
from .helpers import golden_entries, golden_metadata
from .hostile import BAD_METADATA, NOT_ARRAYS

CODECS = [None, "gzip", "Zstd", "LZ4", "Blosc", "Zlib", "BZ2", "LZMA"]
KEY = "some/dir/obj"


def c_bytes(arr: np.ndarray) -> bytes:
    return np.ascontiguousarray(arr).tobytes()


def roundtrip(arr, compression):
    body, metadata = encode_array(arr, compression, KEY)
    meta = ArrayMeta.from_metadata({k.capitalize(): v for k, v in metadata.items()}, KEY)
    return body, metadata, meta, decode_array(bytes(body), meta, KEY)


def reference_decode(body: bytes, compression: str | None) -> bytes:
    """Decode the way cottoncandy 0.4.0 does: gzip module or default numcodecs codec."""
    if compression is None:
        return bytes(body)
    if compression == "gzip":
        return gzip.decompress(bytes(body))
    return bytes(numcodecs.get_codec({"id": compression.lower()}).decode(bytes(body)))


# --------------------------------------------------------------------- golden


def golden_raw_entries():
    return golden_entries("raw")  # collected even when the store is missing, so the test fails


@pytest.mark.parametrize("key,entry", golden_raw_entries(), ids=lambda x: x if isinstance(x, str) else "")
def test_golden_raw_arrays_decode(key, entry):
    assert GOLDEN.is_dir(), f"golden store missing: {GOLDEN}"
    body = (GOLDEN / key).read_bytes()
    metadata = golden_metadata(key)
    meta = ArrayMeta.from_metadata(metadata, key)
    arr = decode_array(body, meta, key)
    assert arr.dtype.str == entry["dtype"]
    assert arr.shape == tuple(entry["shape"])
    assert hashlib.sha256(c_bytes(arr)).hexdigest() == entry["sha256"]
    if meta.compression is None:  # the zero-copy download path
        out = empty_for(meta)
        byte_view(out)[:] = body
        assert c_bytes(finish_array(out, meta, key)) == c_bytes(arr)


def test_golden_has_all_codecs():
    codecs_seen = {v.get("compression") for _, v in golden_raw_entries()}
    assert {"False", "gzip", "Zstd", "LZ4", "Blosc", "Zlib"} <= codecs_seen


@pytest.mark.parametrize("compression", CODECS)
def test_golden_reencoded_readable_by_reference_decoders(compression):
    for key, entry in golden_raw_entries():
        meta = ArrayMeta.from_metadata(golden_metadata(key), key)
        arr = decode_array((GOLDEN / key).read_bytes(), meta, key)
        body, metadata = encode_array(arr, compression, key)
        stored = ArrayMeta.from_metadata(metadata).compression
        assert reference_decode(bytes(body), stored) == c_bytes(arr)
        assert hashlib.sha256(c_bytes(decode_array(bytes(body), ArrayMeta.from_metadata(metadata))))\
            .hexdigest() == entry["sha256"]


# ------------------------------------------------------------ property tests

dtypes = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(endianness="?"),
    hnp.unsigned_integer_dtypes(endianness="?"),
    hnp.floating_dtypes(endianness="?"),
    hnp.complex_number_dtypes(endianness="?"),
    hnp.unicode_string_dtypes(endianness="?", min_len=1, max_len=5),
    hnp.byte_string_dtypes(min_len=1, max_len=5),
    hnp.datetime64_dtypes(endianness="?"),
    hnp.timedelta64_dtypes(endianness="?"),
)
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
layouts = st.sampled_from(["C", "F", "T", "step"])


def apply_layout(arr: np.ndarray, layout: str) -> np.ndarray:
    if layout == "F":
        return np.asfortranarray(arr)
    if layout == "T":
        return arr.T
    if layout == "step" and arr.ndim:
        return arr[..., ::2]
    return arr


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arr=hnp.arrays(dtypes, shapes, elements=None),
    layout=layouts,
    compression=st.sampled_from(CODECS),
)
def test_roundtrip_property(arr, layout, compression):
    arr = apply_layout(arr, layout)
    body, metadata, meta, out = roundtrip(arr, compression)
    assert metadata["order"] == "C"
    assert meta.dtype == arr.dtype and meta.shape == arr.shape
    assert out.dtype == arr.dtype and out.shape == arr.shape
    assert c_bytes(out) == c_bytes(arr)
    assert out.flags.writeable
    if arr.size == 0:
        assert metadata["compression"] == "False"
    assert reference_decode(bytes(body), meta.compression) == c_bytes(arr)


@settings(max_examples=150, deadline=None)
@given(arr=hnp.arrays(dtypes, shapes), compression=st.sampled_from(CODECS))
def test_fortran_order_bodies(arr, compression):
    """order=F: the body holds Fortran-order bytes (as some writers produced)."""
    raw = np.asfortranarray(arr).tobytes(order="F")
    codec = codecs.codec_for_size(compression, len(raw))
    body = bytes(codec.encode(memoryview(raw), arr.dtype.itemsize))
    metadata = {"DTYPE": arr.dtype.str, "Shape": ",".join(map(str, arr.shape)),
                "Compression": str(codec.name or False), "Order": "F"}
    meta = ArrayMeta.from_metadata(metadata, KEY)
    out = decode_array(body, meta, KEY)
    assert c_bytes(out) == c_bytes(arr)
    dest = empty_for(meta)
    decode_array_into(body, dest, meta, KEY)
    assert c_bytes(dest) == c_bytes(arr)


@settings(max_examples=200, deadline=None)
@given(dtype=dtypes, shape=shapes, fortran=st.booleans())
def test_npy_header_matches_numpy_save(dtype, shape, fortran):
    arr = np.zeros(shape, dtype=dtype, order="F" if fortran else "C")
    buf = io.BytesIO()
    np.save(buf, arr)
    saved = buf.getvalue()
    fortran_order = bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
    header = npy_header(dtype, shape, fortran_order)
    assert saved[: len(header)] == header
    assert npy_file_size(dtype, shape, fortran_order) == len(saved)
    data = arr.tobytes(order="F" if fortran_order else "C")
    loaded = np.load(io.BytesIO(header + data))
    assert loaded.dtype == arr.dtype and loaded.shape == arr.shape


# ----------------------------------------------------------------- unit tests


def test_uncompressed_body_shares_memory_when_c_contiguous():
    arr = np.arange(12.0).reshape(3, 4)
    body, metadata = encode_array(arr, None)
    assert metadata == {"dtype": "<f8", "shape": "3,4", "compression": "False", "order": "C"}
    assert np.shares_memory(np.frombuffer(body, dtype=arr.dtype), arr)
    body, _ = encode_array(arr.T, None)
    assert bytes(body) == c_bytes(arr.T)


def test_scalars_and_zero_d():
    for value in (np.float32(1.5), np.int64(-3), np.complex128(1 + 2j), np.bool_(True), 7.0):
        body, metadata, meta, out = roundtrip(value, DEFAULT_COMPRESSION)
        assert metadata["shape"] == "" and out.shape == () and out == value


def test_empty_arrays_are_stored_uncompressed():
    for compression in CODECS:
        body, metadata, _, out = roundtrip(np.zeros((0, 3), ">i2"), compression)
        assert metadata["compression"] == "False" and len(body) == 0 and out.shape == (0, 3)


def test_refuses_object_and_structured_dtypes():
    with pytest.raises(UnsupportedArrayError):
        encode_array(np.array([{}, None], dtype=object), None)
    with pytest.raises(UnsupportedArrayError):
        encode_array(np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]), None)


def test_default_compression_is_readable_by_reference():
    assert get_codec(DEFAULT_COMPRESSION).name == DEFAULT_COMPRESSION
    arr = np.cumsum(np.random.default_rng(0).standard_normal(100_000))
    body, metadata = encode_array(arr)
    assert metadata["compression"] == DEFAULT_COMPRESSION
    assert len(body) < arr.nbytes
    assert reference_decode(bytes(body), DEFAULT_COMPRESSION) == arr.tobytes()


def test_large_bodies_fall_back_to_zstd():
    assert codec_for_size("Blosc", 2**31).name == "Zstd"
    assert codec_for_size("lz4", 2**31).name == "Zstd"
    assert codec_for_size("Blosc", 2**30).name == "Blosc"
    assert codec_for_size("gzip", 2**40).name == "gzip"


def test_codec_names_case_insensitive():
    assert get_codec("zstd").name == get_codec("ZSTD").name == "Zstd"
    assert get_codec("GZIP").name == "gzip"
    for nothing in (None, False, "False", "none", "", " false "):
        assert normalize_compression(nothing) is None
        assert get_codec(nothing).name is None
    for default in (True, "True", " true "):  # one rule everywhere: True is the default codec
        assert normalize_compression(default) == DEFAULT_COMPRESSION


def test_writable_raw_body_is_used_in_place():
    arr = np.arange(10, dtype="<i4")
    body = bytearray(arr.tobytes())
    meta = ArrayMeta.from_metadata({"dtype": "<i4", "shape": "10"})
    out = decode_array(body, meta)
    assert np.shares_memory(out, np.frombuffer(body, dtype=np.uint8))
    out2 = decode_array(bytes(body), meta)
    assert out2.flags.writeable and np.array_equal(out2, arr)


def test_gzip_concatenated_members_and_padding():
    arr = np.arange(1000, dtype="<u2")
    raw = arr.tobytes()
    meta = ArrayMeta.from_metadata({"dtype": "<u2", "shape": "1000", "gzip": "True"})
    assert meta.compression == "gzip"
    body = gzip.compress(raw[:700]) + gzip.compress(raw[700:]) + b"\0" * 10
    assert np.array_equal(decode_array(body, meta, KEY), arr)
    assert np.array_equal(decode_array(memoryview(gzip.compress(raw, 9)), meta, KEY), arr)


def test_gzip_streams_large_bodies():
    arr = np.random.default_rng(1).integers(0, 4, size=5_000_000, dtype="u1")
    meta = ArrayMeta.from_metadata({"dtype": "|u1", "shape": str(arr.size), "compression": "gzip"})
    assert np.array_equal(decode_array(gzip.compress(arr.tobytes(), 1), meta), arr)


def test_unknown_codec_errors_name_codec_and_key():
    for name in ("nope", "pickle", "delta", "json2", "Shuffle"):
        with pytest.raises(UnknownCodecError, match=f"{KEY}.*{name}"):
            get_codec(name, KEY)
    meta = ArrayMeta.from_metadata({"dtype": "<f8", "shape": "2", "compression": "Pickle"})
    with pytest.raises(UnknownCodecError):
        decode_array(b"\0" * 16, meta, KEY)
    with pytest.raises(UnknownCodecError):
        encode_array(np.zeros(3), "Snappy")
    with pytest.raises(UnknownCodecError):
        normalize_compression(3)


def test_missing_numcodecs(monkeypatch):
    codecs._lookup.cache_clear()
    monkeypatch.setitem(sys.modules, "numcodecs", None)
    try:
        with pytest.raises(UnknownCodecError, match=f"{KEY}.*Zstd.*numcodecs"):
            get_codec("Zstd", KEY)
        assert get_codec("gzip").name == "gzip"  # gzip never needs numcodecs
    finally:
        codecs._lookup.cache_clear()


@pytest.mark.parametrize("metadata", [*NOT_ARRAYS.values(), *BAD_METADATA.values()],
                         ids=[*NOT_ARRAYS, *BAD_METADATA])
def test_corrupt_metadata(metadata):
    with pytest.raises(ArrayFormatError, match=KEY):
        ArrayMeta.from_metadata(metadata, KEY)


def test_legacy_gzip_flag_wins():
    meta = ArrayMeta.from_metadata({"Dtype": "<f8", "Shape": "3", "Gzip": "False", "Compression": "Zstd"})
    assert meta.compression is None
    meta = ArrayMeta.from_metadata({"dtype": "<f8", "shape": "3", "gzip": "True"})
    assert meta.compression == "gzip"


@pytest.mark.parametrize("writer_key", [{"Compression": "Zstd"}, {"gzip": "True"}, {"order": "C"}])
def test_0d_shape_dropped_by_the_server_reads_as_0d(writer_key):
    """SeaweedFS drops a metadata entry whose value is empty, and a 0-d array's shape is ``''``."""
    metadata = {"Dtype": "<f8", **writer_key}
    assert is_array_metadata(metadata)
    assert ArrayMeta.from_metadata(metadata, KEY).shape == ()
    assert not is_array_metadata({"dtype": "<f8"})  # dtype alone is not what any writer stores


def _bodies(compression: str | None, raw: bytes) -> bytes:
    return bytes(get_codec(compression).encode(memoryview(raw), 8))


@pytest.mark.parametrize("compression", CODECS)
def test_corrupt_bodies(compression):
    arr = np.arange(500, dtype="<f8")
    raw = arr.tobytes()
    meta = ArrayMeta.from_metadata({"dtype": "<f8", "shape": "500", "compression": str(compression)})
    good = _bodies(compression, raw)
    assert c_bytes(decode_array(good, meta, KEY)) == raw
    bad = [
        good[: len(good) // 2],  # truncated
        good[:-1],  # one byte short
        b"",
        b"\x00garbage!" * 40,
        good + b"trailing garbage",
        _bodies(compression, raw[:-8]),  # decodes to fewer bytes
        _bodies(compression, raw + raw[:8]),  # decodes to more bytes
    ]
    for body in bad:
        with pytest.raises(ArrayFormatError, match=KEY):
            decode_array(body, meta, KEY)
        with pytest.raises(ArrayFormatError, match=KEY):
            get_codec(compression).decode(body, len(raw), KEY)


def test_zstd_header_size_mismatch_and_unknown_size():
    raw = np.arange(100, dtype="<i8").tobytes()
    meta = ArrayMeta.from_metadata({"dtype": "<i8", "shape": "99", "compression": "zstd"})
    frame = _bodies("Zstd", raw)
    assert compressors._zstd_content_size(memoryview(frame)) == 800
    with pytest.raises(ArrayFormatError, match="800 bytes"):
        decode_array(frame, meta, KEY)
    # the same frame without a content size (as streaming writers make it):
    # single-segment flag and size field dropped, 1 KiB window descriptor added
    descriptor = frame[4]
    assert descriptor & 0x20 and descriptor & 0x03 == 0
    size_len = (1, 2, 4, 8)[descriptor >> 6]
    unsized = frame[:4] + bytes([descriptor & 0x1F, 0]) + frame[5 + size_len:]
    assert compressors._zstd_content_size(memoryview(unsized)) is None
    assert bytes(get_codec("zstd").decode(unsized, 800, KEY)) == raw
    with pytest.raises(ArrayFormatError, match="800 bytes"):
        decode_array(unsized, meta, KEY)
    with pytest.raises(ArrayFormatError, match=KEY):
        get_codec("zstd").decode(unsized[:-3], 800, KEY)


def test_codec_decode_returns_exact_bytes():
    raw = np.arange(64, dtype="<i2").tobytes()
    for compression in CODECS:
        out = get_codec(compression).decode(_bodies(compression, raw), len(raw), KEY)
        assert bytes(out) == raw


def test_finish_array_checks_shape():
    meta = ArrayMeta.from_metadata({"dtype": "<f8", "shape": "2,3", "order": "F"})
    arr = empty_for(meta)
    assert arr.flags.f_contiguous
    data = np.arange(6.0).reshape(2, 3)
    byte_view(arr)[:] = data.tobytes(order="F")
    assert np.array_equal(finish_array(arr, meta), data)
    assert np.array_equal(finish_array(data.tobytes(order="F"), meta), data)
    with pytest.raises(ArrayFormatError):
        finish_array(np.zeros(3), meta, KEY)
    with pytest.raises(ValueError):
        byte_view(np.zeros((4, 4))[::2])


# --------------------------------------------------------------- npy headers


@pytest.mark.parametrize(
    "dtype", ["<f8", ">f4", "|b1", "<c16", ">c8", "<U5", ">U3", "|S7", "<M8[ns]", ">m8[s]", "|u1", ">i8"]
)
@pytest.mark.parametrize("shape", [(), (0,), (3,), (0, 4), (2, 3), (2, 3, 4), (1, 2, 1, 5)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_header_byte_for_byte(dtype, shape, order):
    arr = np.zeros(shape, dtype=dtype, order=order)
    buf = io.BytesIO()
    np.save(buf, arr)
    fortran_order = bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
    header = npy_header(np.dtype(dtype), shape, fortran_order)
    assert buf.getvalue() == header + arr.tobytes(order="A")
    assert len(header) % 64 == 0


def test_npy_header_huge_shape_without_allocation():
    shape = (2**40, 2**20, 3)
    header = npy_header("<f8", shape)
    version = np.lib.format.read_magic(io.BytesIO(header))
    assert version == (1, 0)
    fp = io.BytesIO(header)
    np.lib.format.read_magic(fp)
    assert np.lib.format.read_array_header_1_0(fp) == (shape, False, np.dtype("<f8"))
    assert npy_file_size("<f8", shape) == len(header) + 8 * 3 * 2**60


def _save_bytes(arr):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        np.save(buf, arr)
    return buf.getvalue()


def test_npy_header_version_2_and_3():
    big = np.dtype([(f"field_{i:05d}", "<i4") for i in range(3000)])
    saved = _save_bytes(np.zeros(2, big))
    header = npy_header(big, (2,))
    assert header[6:8] == b"\x02\x00" and saved.startswith(header)
    assert npy_file_size(big, (2,)) == len(saved)

    uni = np.dtype([("température€", "<f4"), ("b", ">i2")])
    saved = _save_bytes(np.zeros((3,), uni))
    header = npy_header(uni, (3,))
    assert header[6:8] == b"\x03\x00" and saved.startswith(header)


def test_npy_header_refuses_objects_and_negative_shapes():
    with pytest.raises(UnsupportedArrayError):
        npy_header(np.dtype(object), (3,))
    with pytest.raises(UnsupportedArrayError):
        npy_header("<f8", (-1,))


def test_npy_file_for_golden_array_loads():
    key = "raw/false/f8_3d"
    meta = ArrayMeta.from_metadata(golden_metadata(key), key)
    body = (GOLDEN / key).read_bytes()
    loaded = np.load(io.BytesIO(npy_header(meta.dtype, meta.shape, meta.order == "F") + body))
    assert c_bytes(loaded) == c_bytes(decode_array(body, meta, key))
    assert npy_file_size(meta.dtype, meta.shape) == len(npy_header(meta.dtype, meta.shape)) + len(body)


def test_zlib_reference_format_and_level():
    raw = np.arange(1000, dtype="<i4").tobytes()
    assert zlib.decompress(_bodies("Zlib", raw)) == raw
    assert gzip.decompress(_bodies("gzip", raw)) == raw
