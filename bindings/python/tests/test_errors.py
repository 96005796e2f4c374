"""Failures: every error carries the C code, its name and the library's message."""

import numpy as np
import pytest

import shardpoint as sp
from shardpoint import errors
from helpers import flip_byte


def assert_error(exc_info, cls, code, name):
    err = exc_info.value
    assert type(err) is cls
    assert (err.code, err.name) == (code, name)
    assert err.message  # the library says what went wrong
    assert str(err) == f"{name}: {err.message}"


def test_missing_checkpoint(tmp_path):
    with pytest.raises(sp.NotFoundError) as info:
        sp.Reader(tmp_path / "never-saved")
    assert_error(info, sp.NotFoundError, errors.ENOTFOUND, "SHARDPOINT_ENOTFOUND")


def test_missing_entry(ckpt):
    sp.save(ckpt, {"x": np.zeros(3)})
    with sp.Reader(ckpt) as reader:
        with pytest.raises(sp.NotFoundError):
            reader.entry("y")
        with pytest.raises(sp.NotFoundError) as info:
            reader.read_tensor("y", np.zeros(3))
        assert_error(info, sp.NotFoundError, errors.ENOTFOUND, "SHARDPOINT_ENOTFOUND")


def test_wrong_dtype_is_edtype(ckpt):
    sp.save(ckpt, {"x": np.arange(6, dtype=np.float32)})
    with sp.Reader(ckpt) as reader:
        with pytest.raises(sp.DtypeError) as info:
            reader.read_tensor("x", dtype="i32")
        assert_error(info, sp.DtypeError, errors.EDTYPE, "SHARDPOINT_EDTYPE")
        with pytest.raises(sp.DtypeError):
            reader.read_tensor("x", np.zeros(6, dtype=np.float64))  # nothing is converted
        with pytest.raises(sp.DtypeError):
            reader.read_tensor("x", np.zeros(6, dtype=np.uint32))


def test_corrupt_data_byte_is_echecksum(ckpt):
    data = np.arange(100, dtype=np.int64)
    sp.save(ckpt, {"x": data, "ok": np.ones(4)})
    with sp.Reader(ckpt) as reader:
        (chunk,) = reader.chunks("x")
    flip_byte(ckpt, chunk, at=17)
    with sp.Reader(ckpt) as reader:
        with pytest.raises(sp.ChecksumError) as info:
            reader.verify()
        assert_error(info, sp.ChecksumError, errors.ECHECKSUM, "SHARDPOINT_ECHECKSUM")
        assert "x" in info.value.message
        with pytest.raises(sp.ChecksumError):
            reader.read_tensor("x")
        assert reader.read_tensor("ok").tolist() == [1.0] * 4  # other entries still load
    with sp.Reader(ckpt, verify_checksums=False) as reader:
        back = reader.read_tensor("x")  # NO_VERIFY: the damaged bytes come through
        assert back[2] != data[2] and np.array_equal(np.delete(back, 2), np.delete(data, 2))
        with pytest.raises(sp.ChecksumError):
            reader.verify()  # verify ignores NO_VERIFY


def test_truncated_data_file(ckpt):
    sp.save(ckpt, {"x": np.arange(1000, dtype=np.int32)})
    with sp.Reader(ckpt) as reader:
        (chunk,) = reader.chunks("x")
    with open(ckpt / chunk.file, "r+b") as f:
        f.truncate(chunk.file_offset + 10)
    with sp.Reader(ckpt) as reader:
        with pytest.raises(sp.TruncatedError):
            reader.verify()
        with pytest.raises(sp.TruncatedError):
            reader.read_tensor("x")


def test_existing_checkpoint_needs_overwrite(ckpt):
    sp.save(ckpt, {"x": np.arange(3.0)})
    with pytest.raises(sp.ExistsError) as info:
        sp.save(ckpt, {"x": np.zeros(3)})
    assert_error(info, sp.ExistsError, errors.EEXISTS, "SHARDPOINT_EEXISTS")
    with sp.Reader(ckpt) as reader:  # the old checkpoint is intact
        assert reader.read_tensor("x").tolist() == [0.0, 1.0, 2.0]
        reader.verify()


def test_kind_mismatch(ckpt):
    sp.save(ckpt, {"t": np.zeros(3), "b": b"bytes"})
    with sp.Reader(ckpt) as reader:
        with pytest.raises(sp.KindError):
            reader.read_tensor("b")
        with pytest.raises(sp.KindError) as info:
            reader.read_bytes("t")  # from the library
        assert_error(info, sp.KindError, errors.EKIND, "SHARDPOINT_EKIND")
        with pytest.raises(sp.KindError):
            reader.read_tensor("b", np.zeros(5, np.uint8))


def test_shape_errors(ckpt):
    with sp.Save(ckpt) as s:
        with pytest.raises(sp.ShapeError) as info:
            s.add_tensor("x", np.zeros((2, 2)), offsets=(3, 0), global_shape=(4, 4))
        assert_error(info, sp.ShapeError, errors.ESHAPE, "SHARDPOINT_ESHAPE")
        s.add_tensor("x", np.zeros((4, 4)))
    with sp.Reader(ckpt) as reader:
        with pytest.raises(sp.ShapeError):
            reader.read_tensor("x", offsets=(2, 0), sizes=(3, 4))  # past the end
        with pytest.raises(sp.ShapeError):
            reader.read_tensor("x", np.zeros(4))  # wrong ndim


def test_conflicting_chunks_on_one_rank(ckpt):
    with sp.Save(ckpt, allow_partial=True) as s:  # only rows 0..1 end up offered
        s.add_tensor("x", np.zeros((2, 4)), offsets=(0, 0), global_shape=(4, 4))
        with pytest.raises(sp.ConflictError) as info:
            s.add_tensor("x", np.zeros((2, 4)), offsets=(1, 0), global_shape=(4, 4))
        assert_error(info, sp.ConflictError, errors.ECONFLICT, "SHARDPOINT_ECONFLICT")
        with pytest.raises(sp.ConflictError):
            s.add_tensor("x", np.zeros((2, 4), np.float32), offsets=(2, 0), global_shape=(4, 4))


def test_handle_state_errors(ckpt):
    s = sp.Save(ckpt)
    s.add_tensor("x", np.zeros(2))
    s.commit()
    with pytest.raises(sp.StateError) as info:
        s.add_tensor("y", np.zeros(2))
    assert_error(info, sp.StateError, errors.ESTATE, "SHARDPOINT_ESTATE")
    with pytest.raises(sp.StateError):
        s.commit()
    s.close()
    s.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        s.set_metadata("k", "v")
    with sp.Reader(ckpt) as reader:
        batch = reader.load()
        batch.add_tensor("x")
        batch.execute()
        with pytest.raises(sp.StateError):
            batch.execute()
    assert batch.closed  # closing the reader closed its load
    with pytest.raises(ValueError, match="closed"):
        reader.entries()


def test_blob_capacity_too_small(ckpt):
    sp.save(ckpt, {"b": b"0123456789"})
    with sp.Reader(ckpt) as reader:
        with pytest.raises(sp.RangeError) as info:
            reader.read_bytes("b", bytearray(9))
        assert_error(info, sp.RangeError, errors.ERANGE, "SHARDPOINT_ERANGE")


def test_allow_partial_skips_missing_entries(ckpt):
    sp.save(ckpt, {"x": np.arange(3.0)})
    with sp.Reader(ckpt, allow_partial=True) as reader, reader.load() as batch:
        dest = np.zeros(3)
        batch.add_tensor("gone", np.zeros(3))
        batch.add_bytes("gone.blob", bytearray(3))
        assert batch.add_tensor("gone.too") is None
        batch.add_tensor("x", dest)
        assert batch.skipped_count == 2
        batch.execute()
        assert dest.tolist() == [0.0, 1.0, 2.0]


def test_argument_validation(ckpt):
    with sp.Save(ckpt) as s:
        with pytest.raises(ValueError, match="NUL"):
            s.add_tensor("a\0b", np.zeros(1))
        with pytest.raises(ValueError, match="negative"):
            s.add_tensor("a", np.zeros(1), offsets=(-1,), global_shape=(4,))
        with pytest.raises(ValueError, match="global_shape"):
            s.add_tensor("a", np.zeros(1), offsets=(1,))
        with pytest.raises(ValueError, match="dimensions"):
            s.add_tensor("a", np.zeros(1), offsets=(0, 0), global_shape=(4, 4))
        with pytest.raises(sp.InvalidArgumentError):
            s.add_tensor("", np.zeros(1))  # the library rejects an empty name
        s.add_tensor("a", np.zeros(1))


def test_callback_exception_becomes_ecomm_with_cause(ckpt):
    class Broken(sp.Collectives):
        rank, size = 0, 2

        def gather(self, send, recv):
            raise RuntimeError("transport down")

        def broadcast(self, buf):
            raise RuntimeError("transport down")

    with sp.Comm.from_callbacks(Broken()) as comm:
        assert (comm.rank, comm.size) == (0, 2)
        s = sp.Save(ckpt, comm)
        s.add_tensor("x", np.zeros(2))
        with pytest.raises(sp.CommError) as info:
            s.commit()
        assert_error(info, sp.CommError, errors.ECOMM, "SHARDPOINT_ECOMM")
        assert isinstance(info.value.__cause__, RuntimeError)
        s.close()
    with pytest.raises(sp.NotFoundError):
        sp.Reader(ckpt)


ALL_CODES = {
    "EINVAL": (-1, sp.InvalidArgumentError), "ENOMEM": (-2, sp.OutOfMemoryError), "EIO": (-3, sp.IoError),
    "ENOTFOUND": (-4, sp.NotFoundError), "EEXISTS": (-5, sp.ExistsError), "EFORMAT": (-6, sp.FormatError),
    "ECHECKSUM": (-7, sp.ChecksumError), "ETRUNCATED": (-8, sp.TruncatedError), "EVERSION": (-9, sp.VersionError),
    "EDTYPE": (-10, sp.DtypeError), "ESHAPE": (-11, sp.ShapeError), "EPATH": (-12, sp.PathError),
    "ECONFLICT": (-13, sp.ConflictError), "ERANK": (-14, sp.RankError), "ECOMM": (-15, sp.CommError),
    "EUNCOVERED": (-16, sp.UncoveredError), "ESTATE": (-17, sp.StateError), "EKIND": (-18, sp.KindError),
    "ERANGE": (-19, sp.RangeError), "ENOSPC": (-20, sp.NoSpaceError), "ENOTDURABLE": (-21, sp.NotDurableError),
    "ECANCELED": (-22, sp.CanceledError), "EINTERNAL": (-99, sp.InternalError),
}


def test_the_table_has_every_code_of_the_header():
    """A code added to shardpoint.h must get its class here (and so in the binding)."""
    import pathlib
    import re

    header = pathlib.Path(__file__).resolve().parents[3] / "capi" / "include" / "shardpoint.h"
    codes = dict(re.findall(r"^\s*SHARDPOINT_(E[A-Z]+) = (-\d+),?", header.read_text(), re.M))
    assert codes and {k: int(v) for k, v in codes.items()} == {k: v[0] for k, v in ALL_CODES.items()}


@pytest.mark.parametrize("short", ALL_CODES)
def test_every_code_has_its_class_and_the_library_name(short):
    code, cls = ALL_CODES[short]
    assert getattr(errors, short) == code == cls.code
    assert errors.error_name(code) == f"SHARDPOINT_{short}"  # the library knows the code
    err = errors.error_for(code)
    assert type(err) is cls and err.code == code and err.name == f"SHARDPOINT_{short}"


def test_no_space_is_an_oserror_with_errno_enospc():
    import errno

    err = errors.error_for(errors.ENOSPC)
    assert isinstance(err, OSError) and isinstance(err, sp.IoError) and isinstance(err, sp.ShardpointError)
    assert err.errno == errno.ENOSPC and err.filename is None
    assert str(err).startswith("SHARDPOINT_ENOSPC")
    try:
        raise err
    except OSError as caught:  # what `except OSError` handlers of a full disk see
        assert caught is err


def test_not_durable_says_the_checkpoint_was_committed():
    err = errors.error_for(errors.ENOTDURABLE)
    assert isinstance(err, sp.NotDurableError) and err.committed is True
    assert not isinstance(err, OSError)


@pytest.mark.parametrize("cls,builtin,errno_name", [
    (sp.IoError, OSError, "EIO"),
    (sp.NotFoundError, FileNotFoundError, "ENOENT"),
    (sp.ExistsError, FileExistsError, "EEXIST"),
])
def test_filesystem_errors_are_the_matching_builtins(cls, builtin, errno_name):
    import errno

    err = errors.error_for(cls.code)
    assert isinstance(err, builtin) and isinstance(err, sp.ShardpointError)
    assert err.errno == getattr(errno, errno_name) and err.filename is None
    assert str(err).startswith(err.name)


def test_missing_checkpoints_and_entries_raise_what_python_code_catches(tmp_path):
    with pytest.raises(FileNotFoundError):
        sp.Reader(tmp_path / "nothing-here")
    sp.save(tmp_path / "ckpt", {"w": np.zeros(3)})
    with pytest.raises(FileExistsError):
        sp.save(tmp_path / "ckpt", {"w": np.zeros(3)})
    with sp.Reader(tmp_path / "ckpt") as reader:
        with pytest.raises(KeyError):
            reader.read_tensor("missing")
        with pytest.raises(KeyError):
            reader.entry("missing")


def test_other_errors_are_not_oserrors():
    for cls in (sp.ChecksumError, sp.FormatError, sp.ShapeError, sp.DtypeError, sp.NotDurableError):
        assert not isinstance(errors.error_for(cls.code), OSError), cls
