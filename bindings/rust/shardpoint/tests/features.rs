//! The optional features: `half` (f16 and bf16 element types) and `ndarray` (arrays in and out).
//! Run with `cargo test --features half,ndarray`; without them this file is empty.

#![cfg(any(feature = "half", feature = "ndarray"))]

mod common;

use common::*;
#[allow(unused_imports)]
use shardpoint::{Dtype, ErrorCode, Reader, Save, SaveOptions};

#[cfg(feature = "half")]
#[test]
fn half_floats_are_element_types_with_their_dtypes() {
    use half::{bf16, f16};
    let t = tmp();
    let dir = ckpt(&t, "half");
    let h: Vec<f16> = [0.5f32, -1.25, 65504.0, f32::INFINITY].iter().map(|&x| f16::from_f32(x)).collect();
    let b: Vec<bf16> = [1.0f32, -3.0e38, 1.0e-38, f32::NAN].iter().map(|&x| bf16::from_f32(x)).collect();
    {
        let mut save = Save::new(&dir, None, &SaveOptions::default()).unwrap();
        save.add_tensor("h", &[2, 2], &[0, 0], &[2, 2], &h).unwrap();
        save.add_tensor("b", &[4], &[0], &[4], &b).unwrap();
        save.commit().unwrap();
    }
    let reader = Reader::open(&dir).unwrap();
    assert_eq!(reader.entry_by_name("h").unwrap().dtype, Some(Dtype::F16));
    assert_eq!(reader.entry_by_name("b").unwrap().dtype, Some(Dtype::Bf16));
    let (hh, shape) = reader.read_tensor_vec::<f16>("h").unwrap();
    assert_eq!(
        (hh.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), shape),
        (h.iter().map(|x| x.to_bits()).collect(), vec![2, 2])
    );
    let (bb, _) = reader.read_tensor_vec::<bf16>("b").unwrap();
    assert_eq!(bb.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), b.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    // The dtype is checked, not converted: f16 bits are not bf16 ones.
    expect_err(reader.read_tensor_vec::<bf16>("h"), ErrorCode::Dtype);
}

#[cfg(feature = "ndarray")]
#[test]
fn arrays_in_any_contiguous_order_round_trip() {
    use ndarray::{s, Array, ArrayD, Axis, IxDyn, ShapeBuilder};
    let t = tmp();
    let dir = ckpt(&t, "nd");
    let c = Array::from_shape_fn((3, 4), |(i, j)| (10 * i + j) as f32);
    let f = Array::from_shape_fn((3, 4).f(), |(i, j)| (10 * i + j) as f32); // Fortran order, same values
    assert!(!f.is_standard_layout());
    let transposed = c.t(); // a view in the other order
    let mut flipped = c.clone();
    flipped.invert_axis(Axis(0)); // negative stride on rows
    let every_other = c.slice(s![.., ..;2]);
    // rows 1..3 of a [5, 4] tensor, the rest not saved: uncovered unless partial saves are allowed
    let part = c.slice(s![1.., ..]);
    for allow_partial in [false, true] {
        let mut save = Save::new(&dir, None, &SaveOptions::default().allow_partial(allow_partial)).unwrap();
        save.add_array("c", &c, None, None).unwrap();
        save.add_array("f", &f, None, None).unwrap();
        save.add_array("t", &transposed, None, None).unwrap();
        save.add_array("flipped", &flipped, None, None).unwrap();
        save.add_array("part", &part, Some(&[5, 4]), Some(&[1, 0])).unwrap();
        expect_err(save.add_array("gappy", &every_other, None, None), ErrorCode::Range);
        match save.commit() {
            Ok(()) => assert!(allow_partial),
            Err(err) => assert!(!allow_partial && err.kind() == ErrorCode::Uncovered, "{err}"),
        }
    }
    let reader = Reader::open(&dir).unwrap();
    let back: ArrayD<f32> = reader.read_array("c").unwrap();
    assert_eq!(back, c.clone().into_dyn());
    assert_eq!(reader.read_array::<f32>("f").unwrap(), c.clone().into_dyn());
    assert_eq!(reader.read_array::<f32>("t").unwrap(), c.t().to_owned().into_dyn());
    assert_eq!(reader.read_array::<f32>("flipped").unwrap(), flipped.clone().into_dyn());
    let rows = reader.read_array_box::<f32>("part", &[1, 1], &[2, 2]).unwrap();
    assert_eq!(rows, c.slice(s![1..3, 1..3]).to_owned().into_shape_with_order(IxDyn(&[2, 2])).unwrap());
    expect_err(reader.read_array::<f64>("c"), ErrorCode::Dtype);
}
