//! Save and load back: every native dtype, raw dtypes, scalars, strided sources and destinations,
//! bytes entries, user metadata, boxes spanning chunks.

mod common;

use common::*;
use shardpoint::{as_bytes, Dtype, Element, ErrorCode, Load, Reader, Save, SaveOptions, Strided, TensorChunk};

fn save_one<T: Element>(dir: &std::path::Path, fqn: &str, shape: &[u64], data: &[T]) {
    let mut save = Save::new(dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor(fqn, shape, &vec![0; shape.len()], shape, data).unwrap();
    save.commit().unwrap();
}

#[test]
fn every_native_dtype_round_trips() {
    let t = tmp();
    let dir = ckpt(&t, "native");
    let shape = [3u64, 5];
    let n = 15;
    let (b, u8s, i8s, i16s, i32s, i64s) =
        (values::<bool>(n), values::<u8>(n), values::<i8>(n), values::<i16>(n), values::<i32>(n), values::<i64>(n));
    let (u16s, u32s, u64s, f32s, f64s) =
        (values::<u16>(n), values::<u32>(n), values::<u64>(n), values::<f32>(n), values::<f64>(n));
    {
        let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
        let z = [0u64, 0];
        save.add_tensor("t.bool", &shape, &z, &shape, &b).unwrap();
        save.add_tensor("t.u8", &shape, &z, &shape, &u8s).unwrap();
        save.add_tensor("t.i8", &shape, &z, &shape, &i8s).unwrap();
        save.add_tensor("t.i16", &shape, &z, &shape, &i16s).unwrap();
        save.add_tensor("t.i32", &shape, &z, &shape, &i32s).unwrap();
        save.add_tensor("t.i64", &shape, &z, &shape, &i64s).unwrap();
        save.add_tensor("t.u16", &shape, &z, &shape, &u16s).unwrap();
        save.add_tensor("t.u32", &shape, &z, &shape, &u32s).unwrap();
        save.add_tensor("t.u64", &shape, &z, &shape, &u64s).unwrap();
        save.add_tensor("t.f32", &shape, &z, &shape, &f32s).unwrap();
        save.add_tensor("t.f64", &shape, &z, &shape, &f64s).unwrap();
        save.commit().unwrap();
    }
    let r = Reader::open(&dir).unwrap();
    fn check<T: Element + PartialEq + std::fmt::Debug>(r: &Reader, fqn: &str, want: &[T]) {
        let e = r.entry_by_name(fqn).unwrap();
        assert_eq!(e.dtype, Some(T::DTYPE), "{fqn}");
        assert_eq!(e.nbytes, (want.len() * T::DTYPE.size()) as u64, "{fqn}");
        let (got, shape) = r.read_tensor_vec::<T>(fqn).unwrap();
        assert_eq!(shape, vec![3, 5]);
        assert_eq!(got, want, "{fqn}");
    }
    check(&r, "t.bool", &b);
    check(&r, "t.u8", &u8s);
    check(&r, "t.i8", &i8s);
    check(&r, "t.i16", &i16s);
    check(&r, "t.i32", &i32s);
    check(&r, "t.i64", &i64s);
    check(&r, "t.u16", &u16s);
    check(&r, "t.u32", &u32s);
    check(&r, "t.u64", &u64s);
    check(&r, "t.f32", &f32s);
    check(&r, "t.f64", &f64s);
}

#[test]
fn raw_dtypes_round_trip_as_bytes() {
    let t = tmp();
    let dir = ckpt(&t, "raw");
    let cases = [
        ("h.f16", Dtype::F16, 2usize),
        ("h.bf16", Dtype::Bf16, 2),
        ("h.c64", Dtype::Complex64, 8),
        ("h.c128", Dtype::Complex128, 16),
        ("h.e4m3", Dtype::F8E4m3fn, 1),
        ("h.e5m2", Dtype::F8E5m2, 1),
    ];
    let shape = [4u64, 3];
    let images: Vec<Vec<u8>> = cases
        .iter()
        .enumerate()
        .map(|(c, (_, _, es))| (0..12 * es).map(|k| (k * 7 + c * 31) as u8).collect())
        .collect();
    {
        let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
        for ((fqn, dtype, es), img) in cases.iter().zip(&images) {
            assert_eq!(dtype.size(), *es, "{dtype}");
            save.add_tensor_raw(fqn, *dtype, &shape, &[0, 0], &shape, img, None).unwrap();
        }
        save.commit().unwrap();
    }
    let r = Reader::open(&dir).unwrap();
    for ((fqn, dtype, _), img) in cases.iter().zip(&images) {
        assert_eq!(r.entry_by_name(fqn).unwrap().dtype, Some(*dtype));
        let mut got = vec![0u8; img.len()];
        r.read_tensor_raw(fqn, *dtype, &[0, 0], &shape, &mut got, None).unwrap();
        assert_eq!(&got, img, "{fqn}");
        // Rows 1..3 only.
        let mut rows = vec![0u8; img.len() / 2];
        r.read_tensor_raw(fqn, *dtype, &[1, 0], &[2, 3], &mut rows, None).unwrap();
        assert_eq!(rows, img[img.len() / 4..img.len() * 3 / 4], "{fqn}");
    }
    // bf16 into a Vec<u16>: same bytes, native (little-endian) order.
    let (v, shape_back) = r.read_tensor_raw_vec::<u16>("h.bf16", Dtype::Bf16).unwrap();
    assert_eq!(shape_back, shape);
    assert_eq!(as_bytes(&v), &images[1][..]);
    // A vector of the wrong element size is refused before any read.
    expect_err(r.read_tensor_raw_vec::<u32>("h.bf16", Dtype::Bf16), ErrorCode::Dtype);
    // Asking the typed API for a raw dtype is a dtype mismatch in the library.
    let mut wrong = vec![0u16; 12];
    expect_err(r.read_tensor("h.f16", &[0, 0], &[4, 3], &mut wrong), ErrorCode::Dtype);
}

#[test]
fn scalars_and_empty_tensors() {
    let t = tmp();
    let dir = ckpt(&t, "scalar");
    let step = [1234i64];
    let empty: [f32; 0] = [];
    {
        let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
        save.add_tensor("step", &[], &[], &[], &step).unwrap();
        save.add_tensor("empty", &[0, 4], &[0, 0], &[0, 4], &empty).unwrap();
        save.commit().unwrap();
    }
    let r = Reader::open(&dir).unwrap();
    let e = r.entry_by_name("step").unwrap();
    assert!(e.shape.is_empty());
    assert_eq!(e.numel, 1);
    let mut got = [0i64];
    r.read_tensor("step", &[], &[], &mut got).unwrap();
    assert_eq!(got, step);
    let e = r.entry_by_name("empty").unwrap();
    assert_eq!(e.shape, &[0, 4]);
    assert_eq!(e.numel, 0);
    let (v, shape) = r.read_tensor_vec::<f32>("empty").unwrap();
    assert!(v.is_empty());
    assert_eq!(shape, vec![0, 4]);
}

#[test]
fn strided_sources() {
    let t = tmp();
    let dir = ckpt(&t, "strided-src");
    // A row-major 4x6 buffer.
    let buf: Vec<i32> = (0..24).collect();
    let row: Vec<f64> = vec![1.5, -2.5, 3.5];
    {
        // "sparse" covers rows 1..3 of 4 only, on purpose.
        let mut save = Save::new(&dir, None, &SaveOptions::default().allow_partial(true)).unwrap();
        // Its transpose, a 6x4 tensor: element (i, j) = buf[j * 6 + i].
        save.add_tensor_strided("transposed", &[6, 4], &[0, 0], &[6, 4], &buf, Strided::new(&[1, 6])).unwrap();
        // Its rows bottom-up and columns right-to-left: both strides negative.
        save.add_tensor_strided("reversed", &[4, 6], &[0, 0], &[4, 6], &buf, Strided::new(&[-6, -1]).first(23))
            .unwrap();
        // Every other column of rows 1..3, offered as the chunk [1..3, 0..3] of a 4x3 tensor.
        save.add_tensor_strided("sparse", &[4, 3], &[1, 0], &[2, 3], &buf, Strided::new(&[6, 2]).first(6)).unwrap();
        // One row repeated five times (zero stride).
        save.add_tensor_strided("broadcast", &[5, 3], &[0, 0], &[5, 3], &row, Strided::new(&[0, 1])).unwrap();
        save.commit().unwrap();
    }
    let r = Reader::open(&dir).unwrap();
    let (v, _) = r.read_tensor_vec::<i32>("transposed").unwrap();
    let want: Vec<i32> = (0..6).flat_map(|i| (0..4).map(move |j| j * 6 + i)).collect();
    assert_eq!(v, want);
    let (v, _) = r.read_tensor_vec::<i32>("reversed").unwrap();
    assert_eq!(v, (0..24).rev().collect::<Vec<i32>>());
    let mut got = vec![0i32; 6];
    r.read_tensor("sparse", &[1, 0], &[2, 3], &mut got).unwrap();
    assert_eq!(got, vec![6, 8, 10, 12, 14, 16]);
    assert_eq!(r.entry_by_name("sparse").unwrap().covered_numel, 6);
    let (v, _) = r.read_tensor_vec::<f64>("broadcast").unwrap();
    assert_eq!(v, row.repeat(5));
}

#[test]
fn strided_destinations() {
    let t = tmp();
    let dir = ckpt(&t, "strided-dst");
    let data: Vec<u16> = (100..124).collect(); // 4x6
    save_one(&dir, "m", &[4, 6], &data);
    let r = Reader::open(&dir).unwrap();

    // Column-major destination.
    let mut cm = vec![0u16; 24];
    r.read_tensor_strided("m", &[0, 0], &[4, 6], &mut cm, Strided::new(&[1, 4])).unwrap();
    for i in 0..4 {
        for j in 0..6 {
            assert_eq!(cm[j * 4 + i], data[i * 6 + j]);
        }
    }
    // Into every other slot of a larger buffer; the gaps stay untouched.
    let mut wide = vec![7u16; 48];
    r.read_tensor_strided("m", &[0, 0], &[4, 6], &mut wide, Strided::new(&[12, 2])).unwrap();
    for (k, v) in wide.iter().enumerate() {
        if k % 2 == 0 {
            assert_eq!(*v, data[k / 2], "slot {k}");
        } else {
            assert_eq!(*v, 7, "gap {k}");
        }
    }
    // Negative strides through a Load, together with a C-order request.
    let mut rev = vec![0u16; 6];
    let mut box_ = vec![0u16; 4];
    let mut load = Load::new(&r, None).unwrap();
    load.add_tensor_strided("m", &[2, 0], &[1, 6], &mut rev, Strided::new(&[6, -1]).first(5)).unwrap();
    load.add_tensor("m", &[1, 2], &[2, 2], &mut box_).unwrap();
    load.execute().unwrap();
    assert_eq!(rev, vec![117, 116, 115, 114, 113, 112]);
    assert_eq!(box_, vec![108, 109, 114, 115]);

    // A view that would leave the slice is refused before the library sees it (in C order a
    // destination must hold the box exactly: a shape error).
    let mut small = vec![0u16; 23];
    expect_err(r.read_tensor("m", &[0, 0], &[4, 6], &mut small), ErrorCode::Shape);
    expect_err(r.read_tensor_strided("m", &[0, 0], &[4, 6], &mut cm, Strided::new(&[1, 4]).first(1)), ErrorCode::Range);
    expect_err(r.read_tensor_strided("m", &[0, 0], &[4, 6], &mut cm, Strided::new(&[1])), ErrorCode::Inval);
    assert!(small.iter().all(|&v| v == 0));
}

#[test]
fn bytes_entries() {
    let t = tmp();
    let dir = ckpt(&t, "bytes");
    let blob: Vec<u8> = (0..5000u32).map(|i| (i * 13 % 251) as u8).collect();
    let empty: Vec<u8> = Vec::new();
    {
        let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
        save.add_bytes("optim.blob", &blob).unwrap();
        save.add_bytes("empty.blob", &empty).unwrap();
        save.commit().unwrap();
    }
    let r = Reader::open(&dir).unwrap();
    assert_eq!(r.read_bytes_vec("optim.blob").unwrap(), blob);
    assert_eq!(r.read_bytes_vec("empty.blob").unwrap(), empty);
    // A larger buffer: the length comes back, the tail is untouched.
    let mut big = vec![0xeeu8; 6000];
    assert_eq!(r.read_bytes("optim.blob", &mut big).unwrap(), 5000);
    assert_eq!(&big[..5000], &blob[..]);
    assert!(big[5000..].iter().all(|&b| b == 0xee));
    // Too small.
    let mut small = vec![0u8; 4999];
    expect_err(r.read_bytes("optim.blob", &mut small), ErrorCode::Range);
    let mut load = Load::new(&r, None).unwrap();
    expect_err(load.add_bytes("optim.blob", &mut small), ErrorCode::Range);
    // Through a load.
    let mut dst = vec![0u8; 5000];
    let mut load = Load::new(&r, None).unwrap();
    load.add_bytes("optim.blob", &mut dst).unwrap();
    load.execute().unwrap();
    assert_eq!(dst, blob);
}

#[test]
fn user_metadata() {
    let t = tmp();
    let dir = ckpt(&t, "meta");
    {
        let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
        save.set_metadata("step", "1").unwrap();
        save.set_metadata("step", "1234").unwrap(); // the last value wins
        save.set_metadata("note", "héllo wörld").unwrap();
        expect_err(save.set_metadata("bad\0key", "v"), ErrorCode::Inval);
        save.add_bytes("x", b"x").unwrap();
        save.commit().unwrap();
    }
    let r = Reader::open(&dir).unwrap();
    assert_eq!(r.metadata_get("step").unwrap(), "1234");
    assert_eq!(r.metadata_get("note").unwrap(), "héllo wörld");
    expect_err(r.metadata_get("missing"), ErrorCode::NotFound);
    let mut all = r.metadata().unwrap();
    all.sort();
    assert_eq!(all, vec![("note", "héllo wörld"), ("step", "1234")]);
}

#[test]
fn boxes_spanning_chunks() {
    let t = tmp();
    let dir = ckpt(&t, "chunks");
    // A 10x8 tensor saved as three row bands and, separately, two column halves of a second one.
    let full: Vec<f32> = (0..80).map(|i| i as f32).collect();
    {
        let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
        for (lo, hi) in [(0u64, 3u64), (3, 7), (7, 10)] {
            let band = &full[lo as usize * 8..hi as usize * 8];
            save.add_tensor("rows", &[10, 8], &[lo, 0], &[hi - lo, 8], band).unwrap();
        }
        let strides = c_strides(&[10, 8]);
        for (lo, hi) in [(0u64, 4u64), (4, 8)] {
            let view = Strided::new(&strides).first(lo as usize);
            save.add_tensor_strided("cols", &[10, 8], &[0, lo], &[10, hi - lo], &full, view).unwrap();
        }
        save.commit().unwrap();
    }
    let r = Reader::open(&dir).unwrap();
    assert_eq!(r.entry_by_name("rows").unwrap().chunk_count, 3);
    assert_eq!(r.entry_by_name("cols").unwrap().chunk_count, 2);
    // Rows 2..8, columns 1..7 cross every chunk of both tensors.
    let want: Vec<f32> = (2..8).flat_map(|i| (1..7).map(move |j| (i * 8 + j) as f32)).collect();
    for fqn in ["rows", "cols"] {
        let mut got = vec![0f32; 36];
        r.read_tensor(fqn, &[2, 1], &[6, 6], &mut got).unwrap();
        assert_eq!(got, want, "{fqn}");
        let (whole, _) = r.read_tensor_vec::<f32>(fqn).unwrap();
        assert_eq!(whole, full, "{fqn}");
    }
    // Outside the tensor.
    let mut got = vec![0f32; 36];
    expect_err(r.read_tensor("rows", &[5, 1], &[6, 6], &mut got), ErrorCode::Shape);
}

#[test]
fn bool_destinations_never_hold_invalid_values() {
    // Bytes other than 0/1 stored as bool (a foreign writer could do it) read back as `true`.
    let t = tmp();
    let dir = ckpt(&t, "bools");
    let raw = [0u8, 1, 2, 255, 0, 7];
    {
        let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
        if let Err(e) = save.add_tensor_raw("b", Dtype::Bool, &[6], &[0], &[6], &raw, None) {
            // The library may refuse such bytes itself; then there is nothing to normalize.
            assert_eq!(e.kind(), ErrorCode::Inval, "{e}");
            return;
        }
        if let Err(e) = save.commit() {
            assert_eq!(e.kind(), ErrorCode::Inval, "{e}");
            return;
        }
    }
    let r = Reader::open(&dir).unwrap();
    let mut back = [0u8; 6];
    r.read_tensor_raw("b", Dtype::Bool, &[0], &[6], &mut back, None).unwrap();
    assert_eq!(back, raw);
    let mut b = [false; 6];
    r.read_tensor("b", &[0], &[6], &mut b).unwrap();
    assert_eq!(b, [false, true, true, true, false, true]);
    let mut b2 = [false; 6];
    let mut load = Load::new(&r, None).unwrap();
    load.add_tensor("b", &[0], &[6], &mut b2).unwrap();
    load.execute().unwrap();
    assert_eq!(b2, b);
}

#[test]
fn concurrent_reads_share_one_reader() {
    let t = tmp();
    let dir = ckpt(&t, "threads");
    let data: Vec<u64> = (0..4096).map(|i| i * 3).collect();
    save_one(&dir, "big", &[64, 64], &data);
    let r = Reader::open(&dir).unwrap();
    std::thread::scope(|s| {
        for row in 0..8u64 {
            let (r, data) = (&r, &data);
            s.spawn(move || {
                let mut got = vec![0u64; 8 * 64];
                r.read_tensor("big", &[row * 8, 0], &[8, 64], &mut got).unwrap();
                assert_eq!(&got[..], &data[row as usize * 512..(row as usize + 1) * 512]);
            });
        }
    });
}

/// `add_tensors` offers a batch of whole tensors of mixed dtypes in one call; a refused one keeps
/// none of its batch, and the error names its position.
#[test]
fn batched_add_round_trips_and_is_all_or_nothing() {
    let t = tmp();
    let dir = ckpt(&t, "batch");
    let weights: Vec<Vec<f32>> = (0..64).map(|i| (0..6).map(|k| (i * 10 + k) as f32).collect()).collect();
    let ids = values::<i64>(4);
    let names: Vec<String> = (0..64).map(|i| format!("w.{i}")).collect();
    {
        let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
        let mut batch: Vec<TensorChunk> =
            weights.iter().zip(&names).map(|(w, n)| TensorChunk::whole(n, &[2, 3], w).unwrap()).collect();
        batch.push(TensorChunk::whole("ids", &[4], &ids).unwrap());
        let refused = [
            TensorChunk::whole("a", &[4], &ids).unwrap(),
            TensorChunk::whole("a", &[4], &ids).unwrap(),
        ];
        let e = expect_err(save.add_tensors(&refused), ErrorCode::Conflict);
        assert!(e.to_string().contains("item 1 of the batch"), "{e}");
        match TensorChunk::whole("short", &[5], &ids) {
            Err(e) => assert_eq!(e.kind(), ErrorCode::Range, "{e}"),
            Ok(_) => panic!("a 5-element chunk over 4 values was accepted"),
        }
        save.add_tensors(&batch).unwrap();
        save.commit().unwrap();
    }
    let reader = Reader::open(&dir).unwrap();
    assert_eq!(reader.entry_count().unwrap(), 65); // no "a": its batch was refused whole
    for (w, n) in weights.iter().zip(&names) {
        assert_eq!(&reader.read_tensor_vec::<f32>(n).unwrap().0, w);
    }
    assert_eq!(reader.read_tensor_vec::<i64>("ids").unwrap().0, ids);
}
