//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use shardpoint::{ErrorCode, Reader, Result};

pub fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("shardpoint-rs-").tempdir().expect("temp dir")
}

/// A checkpoint path inside a temp dir (the library creates the directory itself).
pub fn ckpt(t: &tempfile::TempDir, name: &str) -> PathBuf {
    t.path().join(name)
}

/// Distinct, type-appropriate values from an index.
pub trait Gen: Sized {
    fn gen(i: usize) -> Self;
}

macro_rules! gen_int {
    ($($t:ty),+) => { $( impl Gen for $t { fn gen(i: usize) -> $t { (i as i64 * 37 - 100) as $t } } )+ };
}
gen_int!(u8, i8, i16, i32, i64, u16, u32, u64);

impl Gen for f32 {
    fn gen(i: usize) -> f32 {
        i as f32 * 0.5 - 3.25
    }
}
impl Gen for f64 {
    fn gen(i: usize) -> f64 {
        i as f64 * -1.125 + 1e10
    }
}
impl Gen for bool {
    fn gen(i: usize) -> bool {
        i.is_multiple_of(3)
    }
}

pub fn values<T: Gen>(n: usize) -> Vec<T> {
    (0..n).map(T::gen).collect()
}

/// Asserts that `r` failed with `code`, with the library's name for it and a message.
#[track_caller]
pub fn expect_err<T: std::fmt::Debug>(r: Result<T>, code: ErrorCode) -> shardpoint::Error {
    let e = r.expect_err("the call should have failed");
    assert_eq!(e.kind(), code, "unexpected error: {e}");
    assert_eq!(e.code(), code.raw());
    assert_eq!(e.name(), code.name());
    assert!(e.name().starts_with("SHARDPOINT_E"), "{}", e.name());
    assert!(!e.message().is_empty(), "empty message for {}", e.name());
    e
}

/// CRC-32 (zlib polynomial), to check what the reader reports about stored extents.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// The stored bytes of chunk `chunk` of entry `fqn`, straight from its data file.
pub fn stored_bytes(dir: &Path, reader: &Reader, fqn: &str, chunk: u64) -> Vec<u8> {
    let c = reader.chunk(reader.find(fqn).unwrap(), chunk).unwrap();
    let file = std::fs::read(dir.join(c.file)).unwrap();
    file[c.file_offset as usize..(c.file_offset + c.stored_length) as usize].to_vec()
}

/// Flips one byte of the stored extent of chunk 0 of `fqn`.
pub fn corrupt(dir: &Path, fqn: &str, at: u64) {
    let (file, pos) = {
        let reader = Reader::open(dir).unwrap();
        let c = reader.chunk(reader.find(fqn).unwrap(), 0).unwrap();
        assert!(at < c.stored_length);
        (dir.join(c.file), c.file_offset + at)
    };
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[pos as usize] ^= 0x5a;
    std::fs::write(&file, bytes).unwrap();
}

/// C-order element strides of `shape`.
pub fn c_strides(shape: &[u64]) -> Vec<i64> {
    let mut s = vec![1i64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1] as i64;
    }
    s
}
