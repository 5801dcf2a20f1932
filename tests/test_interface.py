"""The Python API contract, run against every backend (local, S3 on rclone, S3 on moto)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

import cottoncandy as cc

from .conftest import LISTING_SERVERS, on_backends


ARRAYS = {
    "f8_3d": np.random.default_rng(0).standard_normal((4, 5, 6)),
    "i2_be": np.arange(100, dtype=">i2").reshape(10, 10),
    "bool": np.array([[True, False], [False, True]]),
    "c16": np.arange(8) * (1 + 2j),
    "unicode": np.array(["ab", "cde", ""], dtype="<U3"),
    "scalar": np.array(3.5),
    "empty": np.zeros((0, 3)),
    "fortran": np.asfortranarray(np.arange(24, dtype=np.int64).reshape(4, 6)),
    "strided": np.arange(100.0)[::3],
}


COMPRESSIONS = [False, "gzip", "Zstd", "LZ4", "Blosc", True]


def _round_trip_cases() -> list:
    """Every array with every compression on the local store and rclone (whose metadata keys come
    back capitalised); on moto and SeaweedFS, where each bucket costs more, every array once and
    every compression at least once: the body is the codec's, the server only keeps metadata."""
    names = sorted(ARRAYS)
    full = [(kind, n, c) for kind in ("local", "rclone") for n in names for c in COMPRESSIONS]
    one_each = [(kind, n, COMPRESSIONS[i % len(COMPRESSIONS)]) for kind in ("moto", "seaweedfs")
                for i, n in enumerate(names)]
    return [pytest.param(*case, id="-".join(map(str, case))) for case in full + one_each]


@pytest.mark.parametrize("backend,name,compression", _round_trip_cases(), indirect=["backend"])
def test_raw_array_round_trip(cci, name, compression):
    arr = ARRAYS[name]
    cci.upload_raw_array(f"arrays/{name}", arr, compression=compression)
    out = cci.download_raw_array(f"arrays/{name}")
    assert out.dtype == arr.dtype
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_raw_array_metadata_is_040_format(cci):
    arr = np.arange(6, dtype="<f4").reshape(2, 3)
    cci.upload_raw_array("m", arr, compression="gzip", subject="S01")
    meta = cci.backend.head("m").metadata
    assert meta["dtype"] == "<f4"
    assert meta["shape"] == "2,3"
    assert meta["compression"] == "gzip"
    assert meta["order"] == "C"
    assert meta["subject"] == "S01"


def test_large_uncompressed_array_uses_parallel_paths(cci):
    arr = np.random.default_rng(1).standard_normal(5 * 1024 * 1024)  # 40 MiB: multipart + ranged GETs
    cci.upload_raw_array("big", arr, compression=False)
    assert cci.backend.head("big").size == arr.nbytes
    np.testing.assert_array_equal(cci.download_raw_array("big"), arr)


def test_reserved_metadata_refused(cci):
    with pytest.raises(ValueError, match="reserved"):
        cci.upload_raw_array("x", np.zeros(3), dtype="float")


def test_object_arrays_refused(cci):
    with pytest.raises(cc.UnsupportedArrayError):
        cci.upload_raw_array("obj", np.array([{}, None], dtype=object))
    assert not cci.exists_object("obj")


def test_missing_object_is_file_not_found(cci):
    with pytest.raises(FileNotFoundError, match="nope/x"):
        cci.download_raw_array("nope/x")
    with pytest.raises(cc.ObjectNotFoundError):
        cci.download_object("nope/x")


def test_not_an_array_is_clear(cci):
    cci.upload_object("plain", b"hello")
    with pytest.raises(cc.ArrayFormatError, match="plain"):
        cci.download_raw_array("plain")


def test_body_shorter_than_shape_is_clear(cci):
    cci.upload_object("short", b"\x00" * 10, dtype="<f8", shape="4", compression="False", order="C")
    with pytest.raises(cc.ArrayFormatError, match="short"):
        cci.download_raw_array("short")


def test_unknown_codec_is_clear(cci):
    cci.upload_object("odd", b"\x00" * 8, dtype="<f8", shape="1", compression="NoSuchCodec")
    with pytest.raises(cc.UnknownCodecError, match="NoSuchCodec"):
        cci.download_raw_array("odd")


@pytest.mark.parametrize("bad", ["a/../b", "../x", "a\x00b", "x" * 1025, ""])
def test_illegal_keys_refused(cci, bad):
    with pytest.raises(cc.InvalidKeyError):
        cci.upload_object(bad, b"1")


def test_key_normalisation(cci):
    cci.upload_object("/a//b///c", b"1")
    assert cci.exists_object("a/b/c")
    assert cci.glob("a/b/*") == ["a/b/c"]


def test_npy_json_pickle_objects(cci):
    arr = np.arange(12.0).reshape(3, 4)
    cci.upload_npy_array("misc/a.npy", arr)
    np.testing.assert_array_equal(cci.download_npy_array("misc/a.npy"), arr)
    np.testing.assert_array_equal(np.load(io.BytesIO(cci.download_object("misc/a.npy"))), arr)
    cci.upload_json("misc/info.json", {"runs": [1, 2]})
    assert cci.download_json("misc/info.json") == {"runs": [1, 2]}
    cci.upload_pickle("misc/p.pkl", {"a": (1, 2)})
    assert cci.download_pickle("misc/p.pkl") == {"a": (1, 2)}
    cci.upload_object("misc/raw", io.BytesIO(b"body"), tag="x")
    with cci.download_stream("misc/raw") as stream:
        assert stream.content.read() == b"body"
        assert stream.metadata["tag"] == "x"
    assert stream.closed


def test_download_stream_reads_like_a_file(cci):
    body = bytes(range(256)) * 4000 + b"\nlast line\n"
    cci.upload_object("misc/stream", io.BytesIO(body), tag="y")
    with cci.download_stream("misc/stream") as stream:
        assert stream.readable() and stream.metadata["tag"] == "y"
        assert stream.read(10) == body[:10]
        buffer = bytearray(1000)
        assert stream.readinto(buffer) == 1000 and bytes(buffer) == body[10:1010]
        assert stream.read() == body[1010:]
        assert stream.read() == b""
    with cci.download_stream("misc/stream") as stream:
        assert list(io.BufferedReader(stream))[-1] == b"last line\n"


def test_glob_stays_in_segment(cci):
    for key in ["p/s1/sub01.grp/image_data", "p/s1/sub02.grp/image_data", "p/s2/sub01_x.grp/image_data",
                "p/s1/deeper/sub01.grp/image_data", "p/s1/sub01.grp/other"]:
        cci.upload_object(key, b"1")
    assert cci.glob("p/*/sub01*.grp/image_data") == ["p/s1/sub01.grp/image_data", "p/s2/sub01_x.grp/image_data"]
    assert cci.glob("p/**/image_data") == [
        "p/s1/deeper/sub01.grp/image_data", "p/s1/sub01.grp/image_data",
        "p/s1/sub02.grp/image_data", "p/s2/sub01_x.grp/image_data"]
    assert cci.glob("p/s1/sub0?.grp/other") == ["p/s1/sub01.grp/other"]
    assert cci.glob("p/s1/sub01.grp/image_data") == ["p/s1/sub01.grp/image_data"]
    assert cci.glob("p/s1/sub01.grp/image") == []


def test_ls_and_lsdir(cci):
    for key in ["d/a", "d/b/c", "d/b/e", "top"]:
        cci.upload_object(key, b"1")
    assert cci.lsdir("") == ["d", "top"]
    assert cci.lsdir("/") == ["d", "top"]
    assert cci.lsdir("d") == ["d/a", "d/b"]
    assert cci.ls("d/") == ["d/a", "d/b"]
    assert cci.ls("d/*") == ["d/a", "d/b"]
    assert cci.ls("*/b") == ["d/b"]


def test_rm_never_touches_string_prefix_siblings(cci):
    for key in ["ab/1", "ab/2/3", "abc/1", "ab_x"]:
        cci.upload_object(key, b"1")
    assert cci.rm("ab") is False  # a directory: only with recursive=True (0.4.0 printed a hint)
    assert cci.glob("**") == ["ab/1", "ab/2/3", "ab_x", "abc/1"]
    assert cci.rm("ab", recursive=True) is True
    assert cci.glob("**") == ["ab_x", "abc/1"]
    assert cci.rm("ab_x") is True
    assert cci.rm("nothing") is False
    assert cci.glob("**") == ["abc/1"]


@on_backends("local", *LISTING_SERVERS)
def test_listing_paginates(cci):
    keys = [f"many/k{i:05d}" for i in range(1100)]
    for key in keys:
        cci.backend.write(key, b"", {})
    assert cci.glob("many/*") == keys
    assert len(cci.lsdir("many")) == 1100
    assert cci.rm("many", recursive=True)
    assert cci.lsdir("many") == []


def test_cp_mv(cci):
    arr = np.arange(5)
    cci.upload_raw_array("src", arr)
    assert cci.cp("src", "dst/copy") == "dst/copy"
    np.testing.assert_array_equal(cci.download_raw_array("dst/copy"), arr)
    with pytest.raises(FileExistsError):
        cci.cp("src", "dst/copy")
    cci.mv("src", "moved")
    assert not cci.exists_object("src")
    np.testing.assert_array_equal(cci.download_raw_array("moved"), arr)


def test_size_and_exists(cci):
    cci.upload_object("s/one", b"12345")
    assert cci.get_size("s/one") == 5
    assert cci.get_size() == 5
    assert cci.exists_object("s/one")
    assert not cci.exists_object("s")
    with pytest.raises(FileNotFoundError):
        cci.exists_object("s/two", raise_err=True)


def test_files_and_directories(cci, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"a")
    (src / "sub" / "b.bin").write_bytes(os.urandom(1000))
    assert cci.upload_from_directory(str(src), "up", recursive=True) == ["up/a.txt", "up/sub/b.bin"]
    assert cci.upload_from_directory(str(src), "flat") == ["flat/a.txt"]
    out = tmp_path / "out"
    files = cci.download_directory("up", str(out))
    assert sorted(files) == [str(out / "a.txt"), str(out / "sub" / "b.bin")]
    assert (out / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    cci.upload_from_file(str(src / "a.txt"), "single")
    cci.download_to_file("single", str(tmp_path / "single.txt"))
    assert (tmp_path / "single.txt").read_bytes() == b"a"
    with pytest.raises(FileNotFoundError):
        cci.download_to_file("missing", str(tmp_path / "missing.txt"))
    assert not (tmp_path / "missing.txt").exists()


def test_failed_upload_keeps_previous_version(cci):
    cci.upload_raw_array("keep", np.arange(3))

    class Exploding(io.RawIOBase):
        def __init__(self):
            self.sent = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            if self.sent > 20 * 1024 * 1024:
                raise OSError("disk vanished")
            n = len(buffer)
            buffer[:n] = b"\x01" * n
            self.sent += n
            return n

    with pytest.raises(OSError, match="disk vanished"):
        cci.upload_object("keep", io.BufferedReader(Exploding(), 1 << 20))
    np.testing.assert_array_equal(cci.download_raw_array("keep"), np.arange(3))


def test_import_is_quiet(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", "import cottoncandy"], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout == "" and out.stderr == ""
    assert list(tmp_path.iterdir()) == []
