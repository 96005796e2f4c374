//! Loads are exact (a destination matches its box), the new error codes, durable saves and
//! save-time coverage.

mod common;

use common::{ckpt, expect_err, tmp};
use shardpoint::{Dtype, ErrorCode, Load, LocalGroup, Reader, Save, SaveOptions};

/// A 6x8 f32 tensor "w" and a blob.
fn saved_w(t: &tempfile::TempDir) -> (Reader, Vec<f32>) {
    let dir = ckpt(t, "w");
    let w: Vec<f32> = (0..48).map(|i| i as f32).collect();
    {
        let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
        save.add_tensor("w", &[6, 8], &[0, 0], &[6, 8], &w).unwrap();
        save.add_bytes("blob", b"abc").unwrap();
        save.commit().unwrap();
    }
    (Reader::open(&dir).unwrap(), w)
}

const WRONG: &[(&str, &[u64])] = &[
    ("too small", &[6, 7]),
    ("too large", &[6, 9]),
    ("more rows", &[7, 8]),
    ("transposed", &[8, 6]),
    ("flat", &[48]),
    ("extra dimension", &[6, 8, 1]),
];

#[test]
fn whole_tensor_into_another_shape_is_a_shape_error() {
    let t = tmp();
    let (r, w) = saved_w(&t);
    for &(what, shape) in WRONG {
        let n: u64 = shape.iter().product();
        let mut dst = vec![-1f32; n as usize];
        let e = r.read_whole("w", shape, &mut dst).unwrap_err();
        assert_eq!(e.kind(), ErrorCode::Shape, "{what}");
        assert_eq!(e.message(), format!("destination has shape {shape:?} but 'w' is [6, 8]"), "{what}");
        let mut load = Load::new(&r, None).unwrap();
        expect_err(load.add_whole("w", shape, &mut dst), ErrorCode::Shape);
        drop(load);
        assert!(dst.iter().all(|&v| v == -1.0), "{what}: the destination was written");
    }
    let mut ok = vec![0f32; 48];
    r.read_whole("w", &[6, 8], &mut ok).unwrap();
    assert_eq!(ok, w);
}

#[test]
fn c_order_destinations_hold_the_box_exactly() {
    let t = tmp();
    let (r, w) = saved_w(&t);
    // An oversized destination used to receive the box silently.
    let mut big = vec![0f32; 49];
    let e = r.read_tensor("w", &[0, 0], &[6, 8], &mut big).unwrap_err();
    assert_eq!(e.kind(), ErrorCode::Shape);
    assert_eq!(e.message(), "destination holds 49 elements but the box [6, 8] of 'w' has 48");
    expect_err(r.read_tensor("w", &[0, 0], &[6, 8], &mut vec![0f32; 47]), ErrorCode::Shape);
    expect_err(r.read_tensor("w", &[1, 1], &[2, 3], &mut vec![0f32; 7]), ErrorCode::Shape);
    expect_err(r.read_whole("w", &[6, 8], &mut vec![0f32; 50]), ErrorCode::Shape);
    expect_err(r.read_tensor_raw("w", Dtype::F32, &[0, 0], &[6, 8], &mut vec![0u8; 4 * 49], None), ErrorCode::Shape);
    expect_err(r.read_tensor_raw("w", Dtype::F32, &[0, 0], &[6, 8], &mut vec![0u8; 4 * 48 + 1], None), ErrorCode::Shape);
    let mut a = vec![0f32; 49];
    let mut b = vec![0u8; 4 * 47];
    let mut load = Load::new(&r, None).unwrap();
    expect_err(load.add_tensor("w", &[0, 0], &[6, 8], &mut a), ErrorCode::Shape);
    expect_err(load.add_tensor_raw("w", Dtype::F32, &[0, 0], &[6, 8], &mut b, None), ErrorCode::Shape);
    drop(load);
    let mut exact = vec![0f32; 48];
    r.read_tensor("w", &[0, 0], &[6, 8], &mut exact).unwrap();
    assert_eq!(exact, w);
}

#[test]
fn wrong_destination_dtype() {
    let t = tmp();
    let (r, _) = saved_w(&t);
    expect_err(r.read_whole("w", &[6, 8], &mut vec![0f64; 48]), ErrorCode::Dtype);
    expect_err(r.read_whole("w", &[6, 8], &mut vec![0i32; 48]), ErrorCode::Dtype);
    expect_err(r.read_tensor("w", &[0, 0], &[2, 8], &mut vec![0u32; 16]), ErrorCode::Dtype);
    expect_err(r.read_tensor_raw("w", Dtype::F16, &[0, 0], &[6, 8], &mut vec![0u8; 96], None), ErrorCode::Dtype);
    let mut d = vec![0i32; 48];
    let mut load = Load::new(&r, None).unwrap();
    expect_err(load.add_whole("w", &[6, 8], &mut d), ErrorCode::Dtype);
}

#[test]
fn explicit_boxes_still_load_parts() {
    let t = tmp();
    let (r, w) = saved_w(&t);
    let mut cols = vec![0f32; 42];
    r.read_tensor("w", &[0, 1], &[6, 7], &mut cols).unwrap(); // columns 1..7, asked for
    for i in 0..6 {
        assert_eq!(cols[i * 7..(i + 1) * 7], w[i * 8 + 1..(i + 1) * 8]);
    }
    // A box inside a larger buffer through an explicit layout.
    let mut big = vec![-1f32; 100];
    let mut rows = vec![0f32; 16];
    {
        let mut load = Load::new(&r, None).unwrap();
        load.add_tensor_strided("w", &[3, 4], &[2, 3], &mut big, shardpoint::Strided::new(&[10, 1]).first(11)).unwrap();
        load.add_tensor("w", &[2, 0], &[2, 8], &mut rows).unwrap();
        load.execute().unwrap();
    }
    assert_eq!(big[11..14], w[28..31]);
    assert_eq!(big[21..24], w[36..39]);
    assert_eq!((big[10], big[14]), (-1.0, -1.0));
    assert_eq!(rows, w[16..32]);
}

#[test]
fn missing_and_bytes_entries_keep_their_errors() {
    let t = tmp();
    let (r, _) = saved_w(&t);
    expect_err(r.read_whole("nope", &[6, 7], &mut vec![0f32; 42]), ErrorCode::NotFound);
    expect_err(r.read_whole("blob", &[3], &mut vec![0u8; 3]), ErrorCode::Kind);
}

#[test]
fn new_error_codes_round_trip() {
    for (code, raw, name) in [
        (ErrorCode::NoSpace, -20, "SHARDPOINT_ENOSPC"),
        (ErrorCode::NotDurable, -21, "SHARDPOINT_ENOTDURABLE"),
        (ErrorCode::Uncovered, -16, "SHARDPOINT_EUNCOVERED"),
        (ErrorCode::Canceled, -22, "SHARDPOINT_ECANCELED"),
    ] {
        assert_eq!(code.raw(), raw);
        assert_eq!(ErrorCode::from_raw(raw), code);
        assert_eq!(code.name(), name);
    }
    // A code newer than the binding (-50 is unassigned) keeps its value.
    assert_eq!(ErrorCode::from_raw(-50), ErrorCode::Other(-50));
    assert_eq!(ErrorCode::Other(-50).raw(), -50);
    assert_eq!(ErrorCode::Other(-50).name(), "SHARDPOINT_UNKNOWN");
}

#[test]
#[allow(deprecated)]
fn save_flags() {
    assert_eq!(SaveOptions::new().flags(), 0);
    assert_eq!(SaveOptions::new().no_fsync(true).flags(), 0x4);
    assert_eq!(SaveOptions::new().allow_partial(true).flags(), 0x8);
    assert_eq!(SaveOptions::new().overwrite(true).no_fsync(true).allow_partial(true).flags(), 0x1 | 0x4 | 0x8);
    // The deprecated option: no effect, never FSYNC (which the library refuses with NO_FSYNC).
    assert_eq!(SaveOptions::new().fsync(true).flags(), 0);
    assert_eq!(SaveOptions::new().fsync(true).no_fsync(true).flags(), 0x4);
    let t = tmp();
    let mut save = Save::new(ckpt(&t, "old"), None, &SaveOptions::new().fsync(true).no_fsync(true)).unwrap();
    save.add_tensor("x", &[2], &[0], &[2], &[1i8, 2]).unwrap();
    save.commit().unwrap();
}

#[test]
fn an_uncovered_save_fails_and_leaves_nothing() {
    let t = tmp();
    let dir = ckpt(&t, "gap");
    let data = vec![0i32; 9];
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("t", &[4, 3], &[0, 0], &[3, 3], &data).unwrap(); // row 3 never offered
    save.add_tensor("full", &[2], &[0], &[2], &data[..2]).unwrap();
    let e = save.commit().unwrap_err();
    assert_eq!(e.kind(), ErrorCode::Uncovered);
    assert!(e.message().contains("'t'"), "{}", e.message());
    expect_err(Reader::open(&dir), ErrorCode::NotFound);
    if let Ok(names) = std::fs::read_dir(&dir) {
        let left: Vec<_> = names.map(|n| n.unwrap().file_name()).filter(|n| n != "shardpoint.lock").collect();
        assert!(left.is_empty(), "the failed save left {left:?}");
    }
    // Every rank of a group gets the error.
    let results = LocalGroup::run(2, |comm| {
        let rank = comm.rank() as u64;
        let mut save = Save::new(&dir, Some(comm), &SaveOptions::default())?;
        save.add_tensor("x", &[6], &[2 * rank], &[2], &data[..2])?;
        save.commit()
    });
    for r in results {
        assert_eq!(r.unwrap_err().kind(), ErrorCode::Uncovered);
    }
    expect_err(Reader::open(&dir), ErrorCode::NotFound);
    // Allowed explicitly, the same save commits.
    let mut save = Save::new(&dir, None, &SaveOptions::default().allow_partial(true)).unwrap();
    save.add_tensor("t", &[4, 3], &[0, 0], &[3, 3], &data).unwrap();
    save.commit().unwrap();
    let e = Reader::open(&dir).unwrap().entry_by_name("t").unwrap().covered_numel;
    assert_eq!(e, 9);
}

/// The fsync and fdatasync calls of one save made by this test binary under strace.
fn fsyncs(t: &tempfile::TempDir, mode: &str) -> usize {
    let dir = ckpt(t, mode);
    let trace = t.path().join(format!("{mode}.trace"));
    let status = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=fsync,fdatasync", "-e", "signal=none", "-o"])
        .arg(&trace)
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "save_helper_process", "--test-threads=1", "--quiet"])
        .env("SHARDPOINT_RS_SAVE_HELPER", format!("{},{mode}", dir.display()))
        .status()
        .unwrap();
    assert!(status.success(), "{mode}: {status}");
    Reader::open(&dir).unwrap();
    let text = std::fs::read_to_string(&trace).unwrap();
    text.lines().filter(|l| l.contains(" fsync(") || l.contains(" fdatasync(")).count()
}

/// Not a test by itself: `durable_by_default` runs it in a child process.
#[test]
#[allow(deprecated)]
fn save_helper_process() {
    let Ok(arg) = std::env::var("SHARDPOINT_RS_SAVE_HELPER") else { return };
    let (dir, mode) = arg.rsplit_once(',').unwrap();
    let opts = SaveOptions::new().no_fsync(mode == "no_fsync").fsync(mode == "fsync");
    let data = vec![0f64; 1000];
    let mut save = Save::new(dir, None, &opts).unwrap();
    save.add_tensor("x", &[1000], &[0], &[1000], &data).unwrap();
    save.commit().unwrap();
}

#[test]
fn durable_by_default() {
    if std::process::Command::new("strace").arg("-V").output().is_err() {
        eprintln!("strace not found: skipped");
        return;
    }
    let t = tmp();
    let n = fsyncs(&t, "default");
    assert!(n >= 3, "a default save made {n} fsync calls, want at least 3 (data, metadata, directory)");
    let n = fsyncs(&t, "fsync");
    assert!(n >= 3, "a save with the deprecated fsync(true) made {n} fsync calls");
    assert_eq!(fsyncs(&t, "no_fsync"), 0, "no_fsync(true) still fsynced");
}
