"""Hostile and broken input: fuzzed metadata and headers, corrupt objects, odd keys.

Objects are written around our writer (raw boto3 to rclone and moto, files and
sidecars for the local backend). Through the Python API every bad object must
raise a clear cottoncandy exception naming its key; in a real mount it must
answer EIO on that file only (or get a sane name mapping), and the mount must
keep serving good files. Metadata parsing and .npy headers are fuzzed with
hypothesis. What tests/test_formats.py already covers at the codec level is
not repeated here.
"""

from __future__ import annotations

import errno
import io
import math
import os
from pathlib import Path

import numpy as np
import numpy.lib.format as npformat
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cottoncandy.errors import ArrayFormatError, CottonCandyError, InvalidKeyError, ObjectNotFoundError
from cottoncandy.format.codecs import get_codec
from cottoncandy.format.metadata import MAX_ARRAY_BYTES, ArrayMeta
from cottoncandy.format.npyheader import npy_file_size, npy_header
from cottoncandy.fuse.operations import fuse_errno
from cottoncandy.interface import Interface
from tests.conftest import S3_SERVERS, make_s3_backend
from tests.hostile import GOOD, GOOD_META, bad_objects, put_s3, write_local
from tests.mountutil import mount_env, mounted

NAME_MAX = 255

# ------------------------------------------------------------ fuzz: metadata

_FIELDS = ("dtype", "shape", "compression", "order", "gzip")
_field_names = st.sampled_from(_FIELDS).flatmap(
    lambda f: st.sampled_from([f, f.upper(), f.capitalize()])) | st.text(max_size=8)
_dtype_texts = st.sampled_from(
    ["<f8", ">i2", "|b1", "<U5", "|S3", "<M8[ns]", "V0", "V", "(2,)f8", "f8,i4", "O", "|O", "<U0", "S",
     "int", "float", "complex256", "<f16", "m8", "c", "u", "<x9", "i4, (2,3)f8", "", " "]
) | st.text(max_size=12)
_shape_texts = st.one_of(
    st.lists(st.integers(min_value=-5, max_value=2**70), max_size=8).map(lambda xs: ",".join(map(str, xs))),
    st.lists(st.integers(min_value=0, max_value=9), max_size=70).map(lambda xs: ",".join(map(str, xs))),
    st.text(alphabet="0123456789,-+ ()[]_ex.", max_size=24),
    st.text(max_size=12),
)
_values = st.one_of(_dtype_texts, _shape_texts, st.sampled_from(
    ["C", "F", "c", "f", "X", "", "True", "False", "1", "0", "gzip", "Zstd", "LZ4", "Blosc", "bz2", "lzma",
     "zlib", "pickle", "json", "maybe", "none"]), st.text(max_size=10))
_metadata_dicts = st.one_of(
    st.dictionaries(_field_names, _values, max_size=7),
    st.fixed_dictionaries({"dtype": _dtype_texts, "shape": _shape_texts},
                          optional={"compression": _values, "order": _values, "Gzip": _values}),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metadata=_metadata_dicts)
def test_metadata_parser_fuzz(metadata):
    """Arbitrary metadata parses to a consistent ArrayMeta or raises ArrayFormatError, nothing else."""
    key = "fuzz/key"
    try:
        meta = ArrayMeta.from_metadata(metadata, key)
    except ArrayFormatError as exc:
        assert exc.key == key and key in str(exc)
        return
    assert not meta.dtype.hasobject
    assert meta.dtype.subdtype is None  # a sub-array dtype would change the array's shape
    assert all(isinstance(n, int) and n >= 0 for n in meta.shape)
    assert meta.order in ("C", "F")
    assert meta.nbytes == math.prod(meta.shape) * meta.dtype.itemsize <= MAX_ARRAY_BYTES
    assert meta.compression is None or (isinstance(meta.compression, str) and meta.compression)
    again = ArrayMeta.from_metadata({k.upper(): v for k, v in meta.to_metadata().items()}, key)
    assert (again.shape, again.order, again.compression, again.nbytes) == (
        meta.shape, meta.order, meta.compression, meta.nbytes)
    try:  # the codec lookup is the next thing a reader does: only our errors may come out
        get_codec(meta.compression, key)
    except ArrayFormatError as exc:
        assert key in str(exc)
    # the mount sizes a file from the metadata alone: that must work for anything that parsed
    header = npy_header(meta.dtype, meta.shape, meta.order == "F")
    assert npy_file_size(meta.dtype, meta.shape, meta.order == "F") == len(header) + meta.nbytes


# ------------------------------------------------------------ fuzz: npy headers

_field_name = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                      min_size=1, max_size=6)
_scalar_dtypes = st.one_of(
    hnp.boolean_dtypes(), hnp.integer_dtypes(endianness="?"), hnp.unsigned_integer_dtypes(endianness="?"),
    hnp.floating_dtypes(endianness="?"), hnp.complex_number_dtypes(endianness="?"),
    hnp.unicode_string_dtypes(endianness="?", min_len=1, max_len=300),
    hnp.byte_string_dtypes(min_len=1, max_len=300),
    hnp.datetime64_dtypes(endianness="?"), hnp.timedelta64_dtypes(endianness="?"),
)
_header_dtypes = _scalar_dtypes | hnp.array_dtypes(
    subtype_strategy=_scalar_dtypes, min_size=1, max_size=6, allow_subarrays=True) | st.builds(
    lambda names, sub: np.dtype([(n, sub) for n in names]),
    st.lists(_field_name, min_size=1, max_size=4, unique=True), _scalar_dtypes)
_huge_shapes = st.lists(st.integers(min_value=0, max_value=2**62), max_size=6).map(tuple) | st.lists(
    st.integers(min_value=0, max_value=3), max_size=40).map(tuple)


def _read_any_header(fp, version):
    """numpy has public readers for 1.0 and 2.0 only; 3.0 goes through its private helper."""
    if version == (1, 0):
        return npformat.read_array_header_1_0(fp, max_header_size=1 << 24)
    if version == (2, 0):
        return npformat.read_array_header_2_0(fp, max_header_size=1 << 24)
    reader = getattr(npformat, "_read_array_header", None)
    if reader is None:
        from numpy.lib import _format_impl

        reader = _format_impl._read_array_header
    return reader(fp, version, max_header_size=1 << 24)


def _parse_header(header: bytes):
    fp = io.BytesIO(header)
    version = npformat.read_magic(fp)
    return _read_any_header(fp, version), fp.tell()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dtype=_header_dtypes, shape=_huge_shapes, fortran=st.booleans())
def test_npy_header_fuzz_parses_back(dtype, shape, fortran):
    """Headers for any valid dtype and (never allocated) shape parse back with numpy.lib.format."""
    header = npy_header(dtype, shape, fortran)
    (parsed_shape, parsed_fortran, parsed_dtype), data_offset = _parse_header(header)
    assert data_offset == len(header) and len(header) % 64 == 0
    assert parsed_fortran == fortran
    assert parsed_dtype == dtype
    # numpy folds a sub-array dtype's dims into the shape when it reads the header back
    assert parsed_shape == shape
    assert npy_file_size(dtype, shape, fortran) == len(header) + math.prod(shape) * dtype.itemsize


# ------------------------------------------------------------ corrupt objects, Python API


def _server_env(server) -> dict[str, str]:
    return mount_env(server.endpoint_url, server.access_key, server.secret_key)


def _fill_store(kind: str, request, tmp_path: Path):
    """Write every bad object plus ``good`` under ``bad/`` of a new store; return an Interface to it."""
    objects = {name: (bad.body, bad.metadata) for name, bad in bad_objects().items()}
    objects["good"] = (GOOD.tobytes(), GOOD_META)
    if kind == "local":
        from cottoncandy.backends.local import LocalBackend

        root = tmp_path / "store"
        for name, (body, metadata) in objects.items():
            write_local(root, f"bad/{name}", body, metadata)
        return Interface(LocalBackend(root))
    server = request.getfixturevalue(f"{kind}_server")
    bucket = request.getfixturevalue("buckets")(server, "cc-hostile")
    client = server.client()
    for name, (body, metadata) in objects.items():
        put_s3(client, bucket, f"bad/{name}", body, metadata)
    return Interface(make_s3_backend(server, bucket))


@pytest.mark.parametrize("kind", ("local",) + S3_SERVERS)
def test_corrupt_objects_raise_clear_errors_through_the_api(kind, request, tmp_path):
    cci = _fill_store(kind, request, tmp_path)
    try:
        for name, bad in bad_objects().items():
            key = f"bad/{name}"
            with pytest.raises(bad.error) as info:
                cci.download_raw_array(key)
            assert isinstance(info.value, CottonCandyError), (name, info.value)
            assert key in str(info.value), (name, str(info.value))
            assert info.value.key == key
            assert fuse_errno(info.value) == errno.EIO  # what the mount would answer
            np.testing.assert_array_equal(cci.download_raw_array("bad/good"), GOOD)
        # a glob over the lot still works, and the plain-object reader is unaffected
        assert len(cci.glob("bad/*")) == len(bad_objects()) + 1
        assert cci.download_object("bad/body_long") == bad_objects()["body_long"].body
    finally:
        cci.backend.close()


def _read_all(path: Path, chunk: int = 1 << 20) -> int:
    """Read a file to its end in chunks (some bad files claim a size no buffer could hold)."""
    total = 0
    with open(path, "rb") as fh:
        while data := fh.read(chunk):
            total += len(data)
    return total


@pytest.mark.parametrize("kind", ["local", "rclone"])
def test_corrupt_objects_eio_in_a_real_mount(kind, request, tmp_path):
    """Each bad array answers EIO (once logged with its key); good files keep working."""
    cci = _fill_store(kind, request, tmp_path)
    if kind == "local":
        bucket, args, env = str(cci.backend.root), ["--backend", "local"], mount_env()
    else:
        bucket, args, env = cci.backend.bucket, [], _server_env(request.getfixturevalue(f"{kind}_server"))
    cci.backend.close()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with mounted(bucket, mountpoint, args, env) as mount:
        directory = mount.path / "bad"
        assert sorted(os.listdir(directory)) == sorted(f"{n}.npy" for n in [*bad_objects(), "good"])
        for name in bad_objects():
            with pytest.raises(OSError) as info:
                _read_all(directory / f"{name}.npy")
            assert info.value.errno == errno.EIO, name
            np.testing.assert_array_equal(np.load(directory / "good.npy"), GOOD)
        # a random read near the end of a broken compressed file fails too, not only a full read
        for name in ("gzip_truncated", "zstd_truncated", "gzip_trailing_junk"):
            with pytest.raises(OSError) as info, open(directory / f"{name}.npy", "rb") as fh:
                fh.seek(GOOD.nbytes - 64)
                fh.read(64)
            assert info.value.errno == errno.EIO, name
        assert mount.process.poll() is None
        log = mount.log()
        missing = [n for n in bad_objects() if f"bad/{n}" not in log]
        assert not missing, f"no log line names {missing}"


# ------------------------------------------------------------ odd keys


ODD_SEGMENTS = ["sp ace", "tab\tname", "new\nline", "émoji-😀", "back\\slash", "per%41cent", "q?mark",
                "hash#", "plus+sign", "amp&er", "ctrl\x01char", "quote\"s'", "star*", "colon:x", "trailing.",
                "~tilde", "-dash", "x" * NAME_MAX]


def _accepted(client, bucket: str, keys: list[str]) -> list[str]:
    """The keys the server stores and returns verbatim (servers differ on the odd ones)."""
    ok = []
    for key in keys:
        try:
            put_s3(client, bucket, key, key.encode("utf-8"))
        except ClientError:  # whatever the server refuses is simply not tested
            continue
        listed = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])}
        if key in listed:
            ok.append(key)
    return ok


@pytest.mark.parametrize("kind", S3_SERVERS)
def test_odd_characters_in_keys(kind, request, tmp_path, buckets):
    """Keys with odd characters round-trip through the API and appear verbatim in the mount."""
    server = request.getfixturevalue(f"{kind}_server")
    bucket = buckets(server, "cc-odd")
    segments, required = ODD_SEGMENTS, {"odd/sp ace", "odd/émoji-😀", "odd/back\\slash", "odd/" + "x" * NAME_MAX}
    if kind == "seaweedfs":  # it stores 'a\\b' as 'a/b', a directory (kept ~150 s once emptied): not ours to change
        segments = [s for s in segments if "\\" not in s]
        required.remove("odd/back\\slash")
    odd = _accepted(server.client(), bucket, [f"odd/{s}" for s in segments])
    assert required <= set(odd), odd
    put_s3(server.client(), bucket, "odd/weird array ü", GOOD.tobytes(), GOOD_META)
    cci = Interface(make_s3_backend(server, bucket))
    try:
        for key in odd:
            assert cci.download_object(key) == key.encode("utf-8"), key
        np.testing.assert_array_equal(cci.download_raw_array("odd/weird array ü"), GOOD)
        with pytest.raises(InvalidKeyError):
            cci.download_object("odd/" + "w" * 1100)
    finally:
        cci.backend.close()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with mounted(bucket, mountpoint, [], _server_env(server)) as mount:
        names = os.listdir(mount.path / "odd")
        assert sorted(names) == sorted([k.split("/", 1)[1] for k in odd] + ["weird array ü.npy"])
        for key in odd:
            assert (mount.path / key).read_bytes() == key.encode("utf-8"), key
        np.testing.assert_array_equal(np.load(mount.path / "odd" / "weird array ü.npy"), GOOD)


def test_tricky_keys_map_sanely(moto_server, tmp_path, buckets):
    """``..``/``.``/``//`` segments, directory markers and >255-byte names: no ghosts, no escapes.

    moto stores keys verbatim, as AWS does (rclone refuses or rewrites most of these).
    """
    client = moto_server.client()
    bucket = buckets(moto_server, "cc-trick")
    long_name, long_dir = "y" * (NAME_MAX + 1), "z" * 300
    tricky = ["trick/../escaped", "trick/./dot", "trick//double", "trick/marker/", "trick/marker/inside",
              f"trick/{long_name}", f"trick/{long_dir}/deep", "trick/plain"]
    for key in tricky:
        put_s3(client, bucket, key, key.encode())
    put_s3(client, bucket, "trick/good", GOOD.tobytes(), GOOD_META)
    put_s3(client, bucket, "trick/" + "a" * (NAME_MAX - 2), GOOD.tobytes(), GOOD_META)  # '.npy' pushes it over
    cci = Interface(make_s3_backend(moto_server, bucket))
    try:
        with pytest.raises(InvalidKeyError):
            cci.download_object("trick/../escaped")
        with pytest.raises(ObjectNotFoundError):  # repeated slashes collapse: 'trick/double'
            cci.download_object("trick//double")
        assert cci.download_object(f"trick/{long_name}") == f"trick/{long_name}".encode()
        assert cci.download_object("trick/marker/") == b"trick/marker/"
    finally:
        cci.backend.close()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with mounted(bucket, mountpoint, [], _server_env(moto_server)) as mount:
        trick = sorted(os.listdir(mount.path / "trick"))
        # no '', '.', '..' or over-long names; the marker object 'trick/marker/' is not a ghost file
        assert trick == ["good.npy", "marker", "plain"], trick
        assert os.listdir(mount.path / "trick" / "marker") == ["inside"]
        assert (mount.path / "trick" / "marker" / "inside").read_bytes() == b"trick/marker/inside"
        np.testing.assert_array_equal(np.load(mount.path / "trick" / "good.npy"), GOOD)
        with pytest.raises(OSError) as info:
            os.stat(mount.path / "trick" / long_name)
        assert info.value.errno in (errno.ENOENT, errno.ENAMETOOLONG)  # FUSE passes up to 1024 bytes
        assert sorted(os.listdir(mount.path)) == ["trick"]
        assert "not shown" in mount.log() and long_name in mount.log()
        assert mount.process.poll() is None


@pytest.mark.parametrize("kind", ["moto", "seaweedfs"])  # rclone refuses such keys (500 on PUT)
def test_object_and_prefix_with_the_same_name(kind, request, tmp_path, buckets):
    """Key ``both`` and keys under ``both/``: both reachable in the mount and through the API."""
    server = request.getfixturevalue(f"{kind}_server")
    client = server.client()
    bucket = buckets(server, "cc-both")
    put_s3(client, bucket, "both", GOOD.tobytes(), GOOD_META)
    put_s3(client, bucket, "both/inner", b"inner bytes")
    put_s3(client, bucket, "plain", b"plain object")
    put_s3(client, bucket, "plain/x", b"x")
    cci = Interface(make_s3_backend(server, bucket))
    try:
        np.testing.assert_array_equal(cci.download_raw_array("both"), GOOD)
        assert cci.download_object("both/inner") == b"inner bytes"
        assert cci.glob("**") == ["both", "both/inner", "plain", "plain/x"]
    finally:
        cci.backend.close()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with mounted(bucket, mountpoint, [], _server_env(server)) as mount:
        assert sorted(os.listdir(mount.path)) == ["both", "both.npy", "plain", "plain~object"]
        np.testing.assert_array_equal(np.load(mount.path / "both.npy"), GOOD)
        assert (mount.path / "both" / "inner").read_bytes() == b"inner bytes"
        assert (mount.path / "plain~object").read_bytes() == b"plain object"
        assert (mount.path / "plain" / "x").read_bytes() == b"x"


def test_ten_thousand_keys_in_one_directory(rclone_server, tmp_path, buckets):
    """10,000 objects in one directory: the API pages through them all, the mount lists them all.

    The API side goes through rclone (ten listing pages). The mount uses the local
    backend on the same files: through S3 the mount HEADs every object of a
    directory (a listing carries no metadata), about 30 s for 10,000 objects here.
    """
    bucket = buckets(rclone_server, "cc-many")
    root = rclone_server.data_dir / bucket
    names = [f"obj{i:05d}" for i in range(10_000)]
    (root / "many").mkdir(parents=True)
    for name in names:  # straight into rclone's data directory: fast, and served as objects
        (root / "many" / name).write_bytes(name.encode())
    cci = Interface(make_s3_backend(rclone_server, bucket))
    try:
        assert cci.glob("many/*") == [f"many/{n}" for n in names]
        mountpoint = tmp_path / "mnt"
        mountpoint.mkdir()
        with mounted(str(root), mountpoint, ["--backend", "local"], mount_env()) as mount:
            assert sorted(os.listdir(mount.path / "many")) == names
            assert (mount.path / "many" / "obj09999").read_bytes() == b"obj09999"
            assert (mount.path / "many" / "obj00000").stat().st_size == 8
    finally:
        cci.backend.close()
