//! Save and load options: compression, no_fsync, overwrite, alignment, threads, verify, partial.

mod common;

use common::*;
use shardpoint::{Codec, ErrorCode, Load, LoadOptions, Reader, Save, SaveOptions, Transform};

fn save_with(dir: &std::path::Path, opts: &SaveOptions, fqn: &str, data: &[f64]) -> shardpoint::Result<()> {
    let mut save = Save::new(dir, None, opts)?;
    save.add_tensor(fqn, &[data.len() as u64], &[0], &[data.len() as u64], data)?;
    save.commit()
}

#[test]
fn compression_shrinks_and_round_trips() {
    let t = tmp();
    let dir = ckpt(&t, "zlib");
    let data: Vec<f64> = (0..20000).map(|i| (i % 16) as f64).collect();
    save_with(&dir, &SaveOptions::new().compression_level(6), "z", &data).unwrap();
    let r = Reader::open(&dir).unwrap();
    let e = r.entry_by_name("z").unwrap();
    assert_eq!(e.nbytes, 160000);
    assert!(e.stored_bytes < e.nbytes / 4, "stored {} of {}", e.stored_bytes, e.nbytes);
    let c = r.chunk(e.index, 0).unwrap();
    assert_eq!(c.transform, Transform::Deflate);
    assert_eq!(c.raw_length, 160000);
    assert_eq!(c.stored_length, e.stored_bytes);
    assert_eq!(crc32(&stored_bytes(&dir, &r, "z", 0)), c.crc32, "the CRC covers the stored (deflated) bytes");
    assert_eq!(r.read_tensor_vec::<f64>("z").unwrap().0, data);
    let mut mid = vec![0f64; 100];
    r.read_tensor("z", &[9950], &[100], &mut mid).unwrap();
    assert_eq!(mid, data[9950..10050]);
    r.verify().unwrap();
}

#[test]
fn block_codecs_round_trip_and_write_format_2() {
    for (codec, transform) in [(Codec::Zstd, Transform::ZstdBlocks), (Codec::Zlib, Transform::ZlibBlocks)] {
        let t = tmp();
        let dir = ckpt(&t, "blocks");
        let data: Vec<f64> = (0..50000).map(|i| ((i % 97) as f64).sqrt()).collect(); // 400 KB: 7 blocks
        save_with(&dir, &SaveOptions::new().codec(codec).shuffle(true), "w", &data).unwrap();
        let r = Reader::open(&dir).unwrap();
        assert_eq!(r.storage_info().unwrap().format_major, 2);
        let e = r.entry_by_name("w").unwrap();
        let c = r.chunk(e.index, 0).unwrap();
        assert_eq!(c.transform, transform);
        assert_eq!(c.shuffle_width, 8);
        assert!(c.stored_length < c.raw_length / 2, "stored {} of {}", c.stored_length, c.raw_length);
        assert_eq!(r.read_tensor_vec::<f64>("w").unwrap().0, data);
        let mut mid = vec![0f64; 1000];
        r.read_tensor("w", &[30000], &[1000], &mut mid).unwrap();
        assert_eq!(mid, data[30000..31000]);
        r.verify().unwrap();
    }
    let t = tmp();
    let err = save_with(&ckpt(&t, "bad"), &SaveOptions::new().shuffle(true), "w", &[1.0]).unwrap_err();
    assert_eq!(err.kind(), ErrorCode::Inval);
    assert!(err.to_string().contains("shuffle"), "{err}");
}

#[test]
fn fsync_alignment_and_threads() {
    let t = tmp();
    let dir = ckpt(&t, "fsync");
    let data: Vec<f64> = (0..1000).map(|i| i as f64).collect();
    let opts = SaveOptions::new().no_fsync(true).alignment(512).io_threads(1);
    {
        let mut save = Save::new(&dir, None, &opts).unwrap();
        save.add_tensor("a", &[1000], &[0], &[1000], &data).unwrap();
        save.add_tensor("b", &[1000], &[0], &[1000], &data).unwrap();
        save.add_bytes("c", b"abc").unwrap();
        save.commit().unwrap();
    }
    let r = Reader::open_with(&dir, &LoadOptions::new().io_threads(1)).unwrap();
    assert_eq!(r.storage_info().unwrap().alignment, 512);
    for e in r.entries().unwrap() {
        for c in r.chunks(e.index).unwrap() {
            // FORMAT.md section 4: "c" (3 bytes) is shorter than the alignment: packed at 64.
            let alignment = if c.stored_length >= 512 { 512 } else { 64 };
            assert_eq!(c.file_offset % alignment, 0, "{}", e.fqn);
        }
    }
    assert_eq!(r.read_tensor_vec::<f64>("b").unwrap().0, data);
    // An alignment that is not a power of two is refused, at the latest by commit.
    let bad = SaveOptions::new().alignment(3);
    let res = Save::new(ckpt(&t, "bad-align"), None, &bad).and_then(|mut s| {
        s.add_bytes("x", b"x")?;
        s.commit()
    });
    expect_err(res, ErrorCode::Inval);
    assert!(Reader::open(ckpt(&t, "bad-align")).is_err());
}

#[test]
fn overwrite_replaces_and_its_absence_protects() {
    let t = tmp();
    let dir = ckpt(&t, "ow");
    let first: Vec<f64> = vec![1.0; 10];
    let second: Vec<f64> = vec![2.0; 7];
    save_with(&dir, &SaveOptions::default(), "v", &first).unwrap();
    // Without overwrite: EEXISTS, and the old checkpoint is intact.
    expect_err(save_with(&dir, &SaveOptions::default(), "v", &second), ErrorCode::Exists);
    {
        let r = Reader::open(&dir).unwrap();
        assert_eq!(r.read_tensor_vec::<f64>("v").unwrap().0, first);
        r.verify().unwrap();
    }
    // With overwrite: replaced.
    save_with(&dir, &SaveOptions::new().overwrite(true), "w", &second).unwrap();
    let r = Reader::open(&dir).unwrap();
    assert_eq!(r.read_tensor_vec::<f64>("w").unwrap().0, second);
    expect_err(r.find("v"), ErrorCode::NotFound);
    r.verify().unwrap();
}

#[test]
fn verify_option_controls_checksums_on_load() {
    let t = tmp();
    let dir = ckpt(&t, "noverify");
    let data: Vec<f64> = (0..64).map(|i| i as f64).collect();
    save_with(&dir, &SaveOptions::default(), "x", &data).unwrap();
    corrupt(&dir, "x", 8 * 5); // first byte of element 5
    let checked = Reader::open(&dir).unwrap();
    expect_err(checked.read_tensor_vec::<f64>("x"), ErrorCode::Checksum);
    let unchecked = Reader::open_with(&dir, &LoadOptions::new().verify(false)).unwrap();
    let (got, _) = unchecked.read_tensor_vec::<f64>("x").unwrap();
    for (i, (g, w)) in got.iter().zip(&data).enumerate() {
        if i == 5 {
            assert_ne!(g, w);
        } else {
            assert_eq!(g, w);
        }
    }
    // verify() checks regardless of the option.
    expect_err(unchecked.verify(), ErrorCode::Checksum);
}

#[test]
fn allow_partial_skips_missing_entries() {
    let t = tmp();
    let dir = ckpt(&t, "partial");
    let data = vec![3.0f64; 4];
    save_with(&dir, &SaveOptions::default(), "have", &data).unwrap();

    let strict = Reader::open(&dir).unwrap();
    let mut dst = vec![0f64; 4];
    let mut load = Load::new(&strict, None).unwrap();
    expect_err(load.add_tensor("missing", &[0], &[4], &mut dst), ErrorCode::NotFound);

    let lenient = Reader::open_with(&dir, &LoadOptions::new().allow_partial(true)).unwrap();
    let (mut a, mut b, mut c) = (vec![0f64; 4], vec![9f64; 4], vec![1u8; 3]);
    let mut load = Load::new(&lenient, None).unwrap();
    load.add_tensor("have", &[0], &[4], &mut a).unwrap();
    load.add_tensor("missing", &[0], &[4], &mut b).unwrap();
    load.add_bytes("missing.blob", &mut c).unwrap();
    assert_eq!(load.skipped_count().unwrap(), 2);
    load.execute().unwrap();
    assert_eq!(a, data);
    assert_eq!(b, vec![9f64; 4]);
    assert_eq!(c, vec![1u8; 3]);
}
