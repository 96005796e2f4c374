"""With ml_dtypes installed, bf16 and f8 tensors come back as ml_dtypes arrays, the dtype they are
saved from; raw carriers still work as destinations. run-tests.sh runs this file in a venv that
has ml_dtypes (SHARDPOINT_REQUIRE_ML_DTYPES=1 turns the skip into a failure there)."""

import os

import numpy as np
import pytest

import shardpoint as sp

if os.environ.get("SHARDPOINT_REQUIRE_ML_DTYPES") == "1":
    import ml_dtypes
else:
    ml_dtypes = pytest.importorskip("ml_dtypes")

KINDS = [("bfloat16", sp.DType.BF16, np.uint16), ("float8_e4m3fn", sp.DType.F8_E4M3FN, np.uint8),
         ("float8_e5m2", sp.DType.F8_E5M2, np.uint8)]


@pytest.mark.parametrize("name,dtype,carrier", KINDS, ids=[k[0] for k in KINDS])
def test_ml_dtypes_arrays_come_back_as_themselves(tmp_path, name, dtype, carrier):
    t = getattr(ml_dtypes, name)
    w = (np.arange(24, dtype=np.float32).reshape(4, 6) / 8 - 1).astype(t)
    sp.save(tmp_path / "c", {"w": w, "state": {"w2": w[1:3]}})
    with sp.Reader(tmp_path / "c") as r:
        assert r.info("w").dtype is dtype and dtype.array_dtype == np.dtype(t)
        whole = r.read_tensor("w")
        assert whole.dtype == np.dtype(t) and whole.tobytes() == w.tobytes()
        box = r["w"][1:3, ::2]
        assert box.dtype == np.dtype(t) and box.tobytes() == w[1:3, ::2].tobytes()
        carrier_out = np.zeros((4, 6), carrier)
        r.read_tensor("w", carrier_out)  # the raw carrier is still accepted
        assert carrier_out.tobytes() == w.tobytes()
    back = sp.load(tmp_path / "c")
    assert back["w"].dtype == np.dtype(t) and back["state"]["w2"].tobytes() == w[1:3].tobytes()
    into = {"w": np.zeros((4, 6), t), "state": {"w2": np.zeros((2, 6), t)}}
    kept = into["w"]
    sp.load(tmp_path / "c", into=into)
    assert into["w"] is kept and kept.tobytes() == w.tobytes()
