//! Failures surface as `Error` with the C code, its name and the library's message.

mod common;

use common::*;
use shardpoint::{ErrorCode, Load, Reader, Save, SaveOptions};

fn saved(t: &tempfile::TempDir) -> std::path::PathBuf {
    let dir = ckpt(t, "ok");
    let data: Vec<f32> = (0..1000).map(|i| i as f32).collect();
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_tensor("w", &[10, 100], &[0, 0], &[10, 100], &data).unwrap();
    save.add_bytes("blob", &[1, 2, 3]).unwrap();
    save.commit().unwrap();
    dir
}

#[test]
fn wrong_dtype_is_edtype() {
    let t = tmp();
    let r = Reader::open(saved(&t)).unwrap();
    let mut dst = vec![0f64; 1000];
    let e = expect_err(r.read_tensor("w", &[0, 0], &[10, 100], &mut dst), ErrorCode::Dtype);
    assert_eq!(e.name(), "SHARDPOINT_EDTYPE");
    assert_eq!(e.code(), -10);
    assert!(e.to_string().starts_with("SHARDPOINT_EDTYPE (-10): "), "{e}");
    let mut ints = vec![0i32; 1000];
    let mut load = Load::new(&r, None).unwrap();
    expect_err(load.add_tensor("w", &[0, 0], &[10, 100], &mut ints), ErrorCode::Dtype);
}

#[test]
fn corrupt_data_byte_is_echecksum() {
    let t = tmp();
    let dir = saved(&t);
    corrupt(&dir, "w", 1234);
    let r = Reader::open(&dir).unwrap(); // metadata is intact
    expect_err(r.verify(), ErrorCode::Checksum);
    let mut dst = vec![0f32; 1000];
    let mut load = Load::new(&r, None).unwrap();
    load.add_tensor("w", &[0, 0], &[10, 100], &mut dst).unwrap();
    expect_err(load.execute(), ErrorCode::Checksum);
    // The blob in the same checkpoint is still fine.
    assert_eq!(r.read_bytes_vec("blob").unwrap(), vec![1, 2, 3]);
}

#[test]
fn truncated_data_file_is_etruncated() {
    let t = tmp();
    let dir = saved(&t);
    let file = {
        let r = Reader::open(&dir).unwrap();
        let c = r.chunk(r.find("w").unwrap(), 0).unwrap();
        (dir.join(c.file), c.file_offset + c.stored_length / 2)
    };
    let f = std::fs::OpenOptions::new().write(true).open(&file.0).unwrap();
    f.set_len(file.1).unwrap();
    drop(f);
    let r = Reader::open(&dir).unwrap();
    expect_err(r.verify(), ErrorCode::Truncated);
}

#[test]
fn missing_checkpoint_is_enotfound() {
    let t = tmp();
    expect_err(Reader::open(ckpt(&t, "nothing-here")), ErrorCode::NotFound);
    // A directory without metadata is not a checkpoint either.
    std::fs::create_dir(ckpt(&t, "empty-dir")).unwrap();
    expect_err(Reader::open(ckpt(&t, "empty-dir")), ErrorCode::NotFound);
    // Nor is an uncommitted save.
    let data = [1u8];
    let mut save = Save::new(ckpt(&t, "dropped"), None, &SaveOptions::default()).unwrap();
    save.add_tensor("x", &[1], &[0], &[1], &data).unwrap();
    drop(save);
    expect_err(Reader::open(ckpt(&t, "dropped")), ErrorCode::NotFound);
}

#[test]
fn save_into_existing_without_overwrite_is_eexists() {
    let t = tmp();
    let dir = saved(&t);
    let other = [9u8; 4];
    let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
    save.add_bytes("other", &other).unwrap();
    let e = expect_err(save.commit(), ErrorCode::Exists);
    assert_eq!(e.name(), "SHARDPOINT_EEXISTS");
    let r = Reader::open(&dir).unwrap();
    r.verify().unwrap();
    expect_err(r.find("other"), ErrorCode::NotFound);
}

#[test]
fn shape_kind_and_conflict_errors() {
    let t = tmp();
    let r = Reader::open(saved(&t)).unwrap();
    let mut dst = vec![0f32; 1000];
    // Wrong number of dimensions.
    expect_err(r.read_tensor("w", &[0], &[1000], &mut dst), ErrorCode::Shape);
    // Box past the end.
    expect_err(r.read_tensor("w", &[5, 0], &[6, 100], &mut dst[..600]), ErrorCode::Shape);
    // Tensor call on a bytes entry and the reverse.
    let mut b = vec![0u8; 3];
    expect_err(r.read_tensor("blob", &[], &[], &mut b[..1]), ErrorCode::Kind);
    let mut raw = vec![0u8; 4000];
    let mut load = Load::new(&r, None).unwrap();
    expect_err(load.add_bytes("w", &mut raw), ErrorCode::Kind);
    // Missing entry.
    expect_err(r.read_tensor("nope", &[0, 0], &[10, 100], &mut dst), ErrorCode::NotFound);

    let data = vec![0f32; 100];
    let mut save = Save::new(ckpt(&t, "conflict"), None, &SaveOptions::default()).unwrap();
    save.add_tensor("x", &[10, 10], &[0, 0], &[6, 10], &data[..60]).unwrap();
    // Overlapping chunk.
    expect_err(save.add_tensor("x", &[10, 10], &[5, 0], &[5, 10], &data[..50]), ErrorCode::Conflict);
    // Same name, different tensor.
    expect_err(save.add_tensor("x", &[10, 11], &[6, 0], &[4, 11], &data[..44]), ErrorCode::Conflict);
    // Chunk outside the global shape.
    expect_err(save.add_tensor("y", &[4], &[2], &[3], &data[..3]), ErrorCode::Shape);
}

#[test]
fn binding_checks_come_before_the_library() {
    let t = tmp();
    let data = vec![0f32; 10];
    let bytes = [0u8; 7];
    let mut save = Save::new(ckpt(&t, "b"), None, &SaveOptions::default()).unwrap();
    // The slice is shorter than the chunk: refused, nothing is read out of bounds.
    expect_err(save.add_tensor("x", &[4, 3], &[0, 0], &[4, 3], &data), ErrorCode::Range);
    // Shape arrays of different lengths.
    expect_err(save.add_tensor("x", &[4, 3], &[0], &[4, 3], &data), ErrorCode::Inval);
    // Names with NUL bytes.
    expect_err(save.add_tensor("x\0y", &[2], &[0], &[2], &data), ErrorCode::Inval);
    expect_err(save.add_bytes("a\0", b"1"), ErrorCode::Inval);
    // A raw buffer holds fewer whole elements than the chunk.
    expect_err(save.add_tensor_raw("h", shardpoint::Dtype::F16, &[4], &[0], &[4], &bytes, None), ErrorCode::Range);
}
