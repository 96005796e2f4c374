//! Inspecting a checkpoint: storage info, entries, chunks, what the files really hold, verify.

mod common;

use common::*;
use shardpoint::{Dtype, EntryKind, ErrorCode, Reader, Save, SaveOptions, Transform};

#[test]
fn entries_chunks_and_storage_info() {
    let t = tmp();
    let dir = ckpt(&t, "inspect-me");
    let w: Vec<f32> = (0..40).map(|i| i as f32 / 4.0).collect(); // 8x5
    let ids: Vec<i64> = (0..6).collect();
    let blob = b"opaque state".to_vec();
    {
        // "a.partial" below is half saved on purpose.
        let mut save = Save::new(&dir, None, &SaveOptions::default().allow_partial(true)).unwrap();
        save.add_tensor("b.weight", &[8, 5], &[0, 0], &[3, 5], &w[..15]).unwrap();
        save.add_tensor("b.weight", &[8, 5], &[3, 0], &[5, 5], &w[15..]).unwrap();
        // Only half of this one is saved.
        save.add_tensor("a.partial", &[12], &[0], &[6], &ids).unwrap();
        save.add_bytes("c.blob", &blob).unwrap();
        save.commit().unwrap();
    }
    let r = Reader::open(&dir).unwrap();

    let info = r.storage_info().unwrap();
    assert_eq!(info.checkpoint_id, "inspect-me");
    assert!(!info.save_id.is_empty());
    assert_eq!(info.library_version, shardpoint::version());
    assert_eq!(info.world_size, 1);
    assert_eq!(info.format_major, shardpoint::sys::SHARDPOINT_FORMAT_MAJOR);
    assert_eq!(info.alignment, 4096);
    assert!(info.file_count >= 1);
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    assert!(
        info.created_unix_ns > now_ns - 600_000_000_000 && info.created_unix_ns <= now_ns,
        "{}",
        info.created_unix_ns
    );

    // Sorted by name.
    let entries = r.entries().unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.fqn).collect();
    assert_eq!(names, vec!["a.partial", "b.weight", "c.blob"]);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64);
        assert_eq!(r.find(e.fqn).unwrap(), i as u64);
    }

    let a = &entries[0];
    assert_eq!((a.kind, a.dtype, a.shape), (EntryKind::Tensor, Some(Dtype::I64), &[12u64][..]));
    assert_eq!((a.numel, a.nbytes, a.covered_numel, a.chunk_count), (12, 96, 6, 1));
    let mut half = vec![0i64; 6];
    r.read_tensor("a.partial", &[0], &[6], &mut half).unwrap();
    assert_eq!(half, ids);
    expect_err(r.read_tensor("a.partial", &[4], &[6], &mut half), ErrorCode::Uncovered);

    let b = &entries[1];
    assert_eq!((b.kind, b.dtype, b.shape), (EntryKind::Tensor, Some(Dtype::F32), &[8u64, 5][..]));
    assert_eq!((b.numel, b.nbytes, b.covered_numel, b.chunk_count), (40, 160, 40, 2));
    assert_eq!(b.stored_bytes, 160);

    let c = &entries[2];
    assert_eq!((c.kind, c.dtype, c.dtype_raw, c.shape), (EntryKind::Bytes, None, -1, &[][..]));
    assert_eq!((c.numel, c.nbytes, c.chunk_count), (12, 12, 1));

    // The chunks: where they are, and that the files really hold those bytes with that CRC.
    let mut chunks = r.chunks(1).unwrap();
    chunks.sort_by_key(|c| c.offsets[0]);
    assert_eq!((chunks[0].offsets, chunks[0].sizes), (&[0u64, 0][..], &[3u64, 5][..]));
    assert_eq!((chunks[1].offsets, chunks[1].sizes), (&[3u64, 0][..], &[5u64, 5][..]));
    let mut total = 0;
    for (idx, fqn) in [(0u64, "a.partial"), (1, "b.weight"), (2, "c.blob")] {
        for (k, ch) in r.chunks(idx).unwrap().iter().enumerate() {
            assert_eq!(ch.transform, Transform::None);
            assert_eq!(ch.writer_rank, 0);
            assert_eq!(ch.stored_length, ch.raw_length);
            // FORMAT.md section 4: extents shorter than the alignment are packed at 64.
            let alignment = if ch.stored_length >= 4096 { 4096 } else { 64 };
            assert_eq!(ch.file_offset % alignment, 0, "extents are aligned");
            assert!(dir.join(ch.file).is_file(), "{}", ch.file);
            let bytes = stored_bytes(&dir, &r, fqn, k as u64);
            assert_eq!(crc32(&bytes), ch.crc32, "{fqn} chunk {k}");
            total += ch.stored_length;
            let want: Vec<u8> = match fqn {
                "a.partial" => shardpoint::as_bytes(&ids).to_vec(),
                "c.blob" => blob.clone(),
                _ => {
                    let lo = ch.offsets[0] as usize * 5;
                    shardpoint::as_bytes(&w[lo..lo + ch.sizes[0] as usize * 5]).to_vec()
                }
            };
            assert_eq!(bytes, want, "{fqn} chunk {k}: raw little-endian C order");
        }
    }
    assert_eq!(info.total_stored_bytes, total);
    assert_eq!(r.chunks(2).unwrap()[0].offsets, &[] as &[u64]);

    expect_err(r.entry(3), ErrorCode::Range);
    expect_err(r.chunk(1, 2), ErrorCode::Range);
    expect_err(r.find("nope"), ErrorCode::NotFound);
    expect_err(r.entry_by_name("nope"), ErrorCode::NotFound);
    r.verify().unwrap();
}

#[test]
fn checkpoint_id_option_is_recorded() {
    let t = tmp();
    let dir = ckpt(&t, "dir-name");
    let mut save = Save::new(&dir, None, &SaveOptions::new().checkpoint_id("run-42/step-7")).unwrap();
    save.add_bytes("x", b"1").unwrap();
    save.commit().unwrap();
    assert_eq!(Reader::open(&dir).unwrap().storage_info().unwrap().checkpoint_id, "run-42/step-7");
}

#[test]
fn dtype_names_and_sizes_come_from_the_library() {
    let want = [
        ("bool", 1),
        ("u8", 1),
        ("i8", 1),
        ("i16", 2),
        ("i32", 4),
        ("i64", 8),
        ("u16", 2),
        ("u32", 4),
        ("u64", 8),
        ("f16", 2),
        ("bf16", 2),
        ("f32", 4),
        ("f64", 8),
        ("complex64", 8),
        ("complex128", 16),
        ("f8_e4m3fn", 1),
        ("f8_e5m2", 1),
    ];
    for (d, (name, size)) in Dtype::ALL.iter().zip(want) {
        assert_eq!(d.name(), name);
        assert_eq!(d.size(), size, "{name}");
        assert_eq!(name.parse::<Dtype>().unwrap(), *d);
        assert_eq!(Dtype::from_raw(d.raw()), Some(*d));
    }
    expect_err(Dtype::from_name("float32"), ErrorCode::Inval);
    assert_eq!(Dtype::from_raw(17), None);
    assert_eq!(shardpoint::version(), shardpoint::sys::SHARDPOINT_VERSION_STRING);
    assert_eq!(shardpoint::version_number(), shardpoint::sys::SHARDPOINT_VERSION_NUMBER);
}
