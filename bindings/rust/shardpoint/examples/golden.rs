//! The cross-language golden program (tests/golden/README.md).
//!
//!     golden write DIR WORLD   saves the model into DIR with WORLD ranks (threads + LocalGroup)
//!     golden read DIR          checks DIR; exit status 0 only if everything matches
//!
//! The model file is $SHARDPOINT_GOLDEN_MODEL, else tests/golden/model.txt of the repository.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use shardpoint::{Dtype, EntryKind, Load, LocalGroup, Reader, Save, SaveOptions, Strided};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sharding {
    Rows,
    Cols,
    Replicated,
    Rank0,
}

#[derive(Debug)]
enum Record {
    Tensor { fqn: String, dtype: Dtype, shape: Vec<u64>, sharding: Sharding, seed: u64 },
    Bytes { fqn: String, len: u64, sharding: Sharding, seed: u64 },
    Meta { key: String, value: String },
}

impl Record {
    fn fqn(&self) -> Option<&str> {
        match self {
            Record::Tensor { fqn, .. } | Record::Bytes { fqn, .. } => Some(fqn),
            Record::Meta { .. } => None,
        }
    }
}

fn parse_model(text: &str) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        let bad = |why: &str| format!("model line {}: {why}: {line:?}", n + 1);
        let sharding = |s: &str| match s {
            "rows" => Ok(Sharding::Rows),
            "cols" => Ok(Sharding::Cols),
            "replicated" => Ok(Sharding::Replicated),
            "rank0" => Ok(Sharding::Rank0),
            _ => Err(bad("unknown sharding")),
        };
        let num = |s: &str| s.parse::<u64>().map_err(|_| bad("bad number"));
        match (f[0], f.len()) {
            ("tensor", 6) => {
                let dtype = Dtype::from_name(f[2]).map_err(|e| bad(&e.to_string()))?;
                let shape =
                    if f[3] == "-" { Vec::new() } else { f[3].split(',').map(num).collect::<Result<_, _>>()? };
                out.push(Record::Tensor {
                    fqn: f[1].into(),
                    dtype,
                    shape,
                    sharding: sharding(f[4])?,
                    seed: num(f[5])?,
                });
            }
            ("bytes", 5) => {
                out.push(Record::Bytes {
                    fqn: f[1].into(),
                    len: num(f[2])?,
                    sharding: sharding(f[3])?,
                    seed: num(f[4])?,
                });
            }
            ("meta", 3) => out.push(Record::Meta { key: f[1].into(), value: f[2].into() }),
            _ => return Err(bad("unknown record")),
        }
    }
    Ok(out)
}

/// The generator rule: byte k of the entry's C-order little-endian image.
fn image(nbytes: u64, seed: u64, is_bool: bool) -> Vec<u8> {
    (0..nbytes)
        .map(|k| {
            let b = (k.wrapping_mul(131).wrapping_add(seed * 17).wrapping_add(k >> 11) % 256) as u8;
            if is_bool {
                b % 2
            } else {
                b
            }
        })
        .collect()
}

fn tensor_image(dtype: Dtype, shape: &[u64], seed: u64) -> Vec<u8> {
    let numel: u64 = shape.iter().product();
    image(numel * dtype.size() as u64, seed, dtype == Dtype::Bool)
}

/// part(n, r, W) = [floor(r n / W), floor((r + 1) n / W))
fn part(n: u64, r: u64, w: u64) -> (u64, u64) {
    (r * n / w, (r + 1) * n / w)
}

/// C-order element strides of `shape`.
fn c_strides(shape: &[u64]) -> Vec<i64> {
    let mut s = vec![1i64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1] as i64;
    }
    s
}

fn model_path() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SHARDPOINT_GOLDEN_MODEL") {
        return Ok(PathBuf::from(p));
    }
    let rel = Path::new("tests/golden/model.txt");
    let from_crate = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..").join(rel);
    if from_crate.exists() {
        return Ok(from_crate);
    }
    let mut dir = std::env::current_dir().map_err(|e| e.to_string())?;
    loop {
        if dir.join(rel).exists() {
            return Ok(dir.join(rel));
        }
        if !dir.pop() {
            return Err("tests/golden/model.txt not found; set SHARDPOINT_GOLDEN_MODEL".into());
        }
    }
}

fn write(dir: &Path, world: usize, model: &[Record]) -> Result<(), String> {
    // Every rank generates whole images and offers its part of them; the images outlive the save.
    let images: Vec<Vec<u8>> = model
        .iter()
        .map(|rec| match rec {
            Record::Tensor { dtype, shape, seed, .. } => tensor_image(*dtype, shape, *seed),
            Record::Bytes { len, seed, .. } => image(*len, *seed, false),
            Record::Meta { .. } => Vec::new(),
        })
        .collect();
    let w = world as u64;
    LocalGroup::run(world, |comm| -> Result<(), String> {
        let r = comm.rank() as u64;
        let mut save = Save::new(dir, Some(comm), &SaveOptions::default()).map_err(|e| e.to_string())?;
        for (rec, img) in model.iter().zip(&images) {
            let res = match rec {
                Record::Tensor { fqn, dtype, shape, sharding, .. } => {
                    let zeros = vec![0u64; shape.len()];
                    let esize = dtype.size();
                    match sharding {
                        Sharding::Replicated => save.add_tensor_raw(fqn, *dtype, shape, &zeros, shape, img, None),
                        Sharding::Rank0 if r == 0 => save.add_tensor_raw(fqn, *dtype, shape, &zeros, shape, img, None),
                        Sharding::Rank0 => Ok(()),
                        Sharding::Rows => {
                            let (lo, hi) = part(*shape.first().ok_or(format!("{fqn}: rows of a scalar"))?, r, w);
                            if lo == hi {
                                continue;
                            }
                            let row_bytes = (shape[1..].iter().product::<u64>() as usize) * esize;
                            let mut offsets = zeros.clone();
                            offsets[0] = lo;
                            let mut sizes = shape.clone();
                            sizes[0] = hi - lo;
                            // Rows are contiguous in the C-order image.
                            let rows = &img[lo as usize * row_bytes..hi as usize * row_bytes];
                            save.add_tensor_raw(fqn, *dtype, shape, &offsets, &sizes, rows, None)
                        }
                        Sharding::Cols => {
                            if shape.len() < 2 {
                                return Err(format!("{fqn}: cols sharding needs 2 dimensions"));
                            }
                            let (lo, hi) = part(shape[1], r, w);
                            if lo == hi {
                                continue;
                            }
                            let mut offsets = zeros.clone();
                            offsets[1] = lo;
                            let mut sizes = shape.clone();
                            sizes[1] = hi - lo;
                            // A column band is a strided view of the whole image.
                            let strides = c_strides(shape);
                            let view = Strided::new(&strides).first(lo as usize);
                            save.add_tensor_raw(fqn, *dtype, shape, &offsets, &sizes, img, Some(view))
                        }
                    }
                }
                Record::Bytes { fqn, sharding, .. } => match sharding {
                    Sharding::Replicated => save.add_bytes(fqn, img),
                    Sharding::Rank0 if r == 0 => save.add_bytes(fqn, img),
                    Sharding::Rank0 => Ok(()),
                    _ => return Err(format!("{fqn}: bytes entries are rank0 or replicated")),
                },
                Record::Meta { key, value } => save.set_metadata(key, value),
            };
            res.map_err(|e| format!("rank {r}: {}: {e}", rec.fqn().unwrap_or("meta")))?;
        }
        save.commit().map_err(|e| format!("rank {r}: commit: {e}"))
    })
    .into_iter()
    .collect()
}

fn read(dir: &Path, model: &[Record]) -> Vec<String> {
    let mut fails = Vec::new();
    let reader = match Reader::open(dir) {
        Ok(r) => r,
        Err(e) => return vec![format!("open {}: {e}", dir.display())],
    };

    // 1. Exactly the model's entries, with their kinds, dtypes, shapes and lengths.
    let entries = match reader.entries() {
        Ok(e) => e,
        Err(e) => return vec![format!("entries: {e}")],
    };
    for e in &entries {
        if !model.iter().any(|rec| rec.fqn() == Some(e.fqn)) {
            fails.push(format!("{}: not in the model", e.fqn));
        }
    }
    let mut present = Vec::new(); // (record, image) of entries whose description matches
    for rec in model {
        let Some(fqn) = rec.fqn() else { continue };
        let Some(e) = entries.iter().find(|e| e.fqn == fqn) else {
            fails.push(format!("{fqn}: missing"));
            continue;
        };
        match rec {
            Record::Tensor { dtype, shape, seed, .. } => {
                if e.kind != EntryKind::Tensor || e.dtype != Some(*dtype) || e.shape != shape.as_slice() {
                    fails.push(format!(
                        "{fqn}: got {:?} {:?} {:?}, want tensor {dtype} {shape:?}",
                        e.kind, e.dtype, e.shape
                    ));
                    continue;
                }
                present.push((rec, tensor_image(*dtype, shape, *seed)));
            }
            Record::Bytes { len, seed, .. } => {
                if e.kind != EntryKind::Bytes || e.nbytes != *len {
                    fails.push(format!("{fqn}: got {:?} of {} bytes, want bytes of {len}", e.kind, e.nbytes));
                    continue;
                }
                present.push((rec, image(*len, *seed, false)));
            }
            Record::Meta { .. } => {}
        }
    }

    // 2. Every entry loaded whole, all in one load.
    let mut bufs: Vec<Vec<u8>> = present.iter().map(|(_, img)| vec![0u8; img.len()]).collect();
    let mut requested = vec![false; present.len()];
    match Load::new(&reader, None) {
        Err(e) => fails.push(format!("load: {e}")),
        Ok(mut load) => {
            for (i, ((rec, _), buf)) in present.iter().zip(bufs.iter_mut()).enumerate() {
                let res = match rec {
                    Record::Tensor { fqn, dtype, shape, .. } => {
                        load.add_tensor_raw(fqn, *dtype, &vec![0; shape.len()], shape, buf, None)
                    }
                    Record::Bytes { fqn, .. } => load.add_bytes(fqn, buf),
                    Record::Meta { .. } => unreachable!(),
                };
                match res {
                    Ok(()) => requested[i] = true,
                    Err(e) => fails.push(format!("{}: request: {e}", rec.fqn().unwrap_or(""))),
                }
            }
            if let Err(e) = load.execute() {
                fails.push(format!("load: {e}"));
            }
        }
    }
    for (((rec, img), buf), asked) in present.iter().zip(&bufs).zip(&requested) {
        if *asked && buf != img {
            fails.push(format!("{}: whole entry differs from the generator", rec.fqn().unwrap_or("")));
        }
    }

    // 3. The box from floor(shape[0] / 3) to shape[0] of every tensor with shape[0] >= 2.
    for (rec, img) in &present {
        let Record::Tensor { fqn, dtype, shape, .. } = rec else { continue };
        if shape.is_empty() || shape[0] < 2 {
            continue;
        }
        let lo = shape[0] / 3;
        let mut offsets = vec![0u64; shape.len()];
        offsets[0] = lo;
        let mut sizes = shape.clone();
        sizes[0] = shape[0] - lo;
        let row_bytes = img.len() / shape[0] as usize;
        let want = &img[lo as usize * row_bytes..];
        let mut got = vec![0u8; want.len()];
        match reader.read_tensor_raw(fqn, *dtype, &offsets, &sizes, &mut got, None) {
            Err(e) => fails.push(format!("{fqn}: box read: {e}")),
            Ok(()) if got != want => fails.push(format!("{fqn}: box [{lo}..{}] differs from the generator", shape[0])),
            Ok(()) => {}
        }
    }

    // 4. The user metadata holds every meta pair.
    for rec in model {
        if let Record::Meta { key, value } = rec {
            match reader.metadata_get(key) {
                Ok(v) if v == value => {}
                Ok(v) => fails.push(format!("meta {key}: got {v:?}, want {value:?}")),
                Err(e) => fails.push(format!("meta {key}: {e}")),
            }
        }
    }
    fails
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: golden write DIR WORLD | golden read DIR";
    let model = match model_path().and_then(|p| {
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        parse_model(&text)
    }) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("golden: {e}");
            return ExitCode::from(2);
        }
    };
    match args.get(1).map(String::as_str) {
        Some("write") if args.len() == 4 => {
            let world = match args[3].parse::<usize>() {
                Ok(w) if w >= 1 => w,
                _ => {
                    eprintln!("golden: WORLD must be a positive integer");
                    return ExitCode::from(2);
                }
            };
            match write(Path::new(&args[2]), world, &model) {
                Ok(()) => {
                    println!("golden write: {} records with {world} ranks into {}", model.len(), args[2]);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("golden write: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("read") if args.len() == 3 => {
            let fails = read(Path::new(&args[2]), &model);
            for f in &fails {
                println!("FAIL {f}");
            }
            if fails.is_empty() {
                println!("golden read: {} records match in {}", model.len(), args[2]);
                ExitCode::SUCCESS
            } else {
                println!("golden read: {} failures", fails.len());
                ExitCode::FAILURE
            }
        }
        _ => {
            eprintln!("{usage}");
            ExitCode::from(2)
        }
    }
}
