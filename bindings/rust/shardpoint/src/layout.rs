use std::ffi::CString;

use crate::error::{Error, ErrorCode, Result};

/// Where the elements of a box sit in a slice: the index of the box's first element and one
/// stride per dimension, counted in elements (not bytes). Strides may be negative or zero.
///
/// A transposed 2-d view of a row-major `[rows, cols]` buffer is `Strided::new(&[1, cols])`; the
/// same rows read bottom-up is `Strided::new(&[-(cols as i64), 1]).first((rows - 1) * cols)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strided<'s> {
    pub first: usize,
    pub strides: &'s [i64],
}

impl<'s> Strided<'s> {
    /// A view starting at element 0.
    pub fn new(strides: &'s [i64]) -> Strided<'s> {
        Strided { first: 0, strides }
    }

    /// The same view starting at element `first` of the slice.
    pub fn first(self, first: usize) -> Strided<'s> {
        Strided { first, ..self }
    }
}

/// Checks that a box with `sizes` laid out by `layout` (C order when None) stays inside a slice
/// of `len` elements, so the library never touches memory outside it. Returns the index of the
/// first element and the strides pointer to pass (NULL for C order).
pub(crate) fn check_view(len: usize, sizes: &[u64], layout: Option<&Strided<'_>>) -> Result<(usize, *const i64)> {
    let too_big = || Error::new(ErrorCode::Range, "box size overflows");
    match layout {
        None => {
            let mut need: u64 = 1;
            for &s in sizes {
                need = need.checked_mul(s).ok_or_else(too_big)?;
            }
            if need > len as u64 {
                return Err(Error::new(
                    ErrorCode::Range,
                    format!("the slice holds {len} elements, the box {sizes:?} needs {need}"),
                ));
            }
            Ok((0, std::ptr::null()))
        }
        Some(v) => {
            if v.strides.len() != sizes.len() {
                return Err(Error::new(
                    ErrorCode::Inval,
                    format!("{} strides given for {} dimensions", v.strides.len(), sizes.len()),
                ));
            }
            if v.first > len {
                return Err(Error::new(
                    ErrorCode::Range,
                    format!("first element {} is past the slice end {len}", v.first),
                ));
            }
            // An empty box touches no memory.
            if sizes.contains(&0) {
                return Ok((v.first, v.strides.as_ptr()));
            }
            let mut lo = v.first as i128;
            let mut hi = v.first as i128;
            for (&size, &stride) in sizes.iter().zip(v.strides) {
                let reach = (stride as i128).checked_mul(size as i128 - 1).ok_or_else(too_big)?;
                if reach < 0 {
                    lo = lo.checked_add(reach).ok_or_else(too_big)?;
                } else {
                    hi = hi.checked_add(reach).ok_or_else(too_big)?;
                }
            }
            if lo < 0 || hi >= len as i128 {
                return Err(Error::new(
                    ErrorCode::Range,
                    format!(
                        "the view (first {}, strides {:?}, sizes {sizes:?}) reaches elements {lo}..={hi} of a slice of {len}",
                        v.first, v.strides
                    ),
                ));
            }
            Ok((v.first, v.strides.as_ptr()))
        }
    }
}

/// `check_view` for a load destination, which must match the box exactly: in C order (no layout)
/// the slice holds exactly the box's elements, no more and no fewer (`Shape` otherwise, naming
/// both); with an explicit layout every element the box places must lie inside it (`Range`).
pub(crate) fn check_destination(
    fqn: &str,
    len: usize,
    sizes: &[u64],
    layout: Option<&Strided<'_>>,
) -> Result<(usize, *const i64)> {
    if layout.is_none() {
        let need = sizes.iter().try_fold(1u64, |n, &s| n.checked_mul(s));
        if need != Some(len as u64) {
            let need = need.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
            return Err(Error::new(
                ErrorCode::Shape,
                format!("destination holds {len} elements but the box {sizes:?} of '{fqn}' has {need}"),
            ));
        }
    }
    check_view(len, sizes, layout)
}

/// A raw destination of `bytes` bytes must hold whole elements of `esize` bytes.
pub(crate) fn whole_elements(fqn: &str, bytes: usize, esize: usize) -> Result<usize> {
    if esize == 0 || bytes % esize != 0 {
        return Err(Error::new(
            ErrorCode::Shape,
            format!("a destination of {bytes} bytes for '{fqn}' is not a whole number of {esize}-byte elements"),
        ));
    }
    Ok(bytes / esize)
}

/// The shape check of a whole-tensor load: `shape` is the destination's, `stored` the tensor's.
pub(crate) fn check_whole(fqn: &str, shape: &[u64], stored: &[u64]) -> Result<()> {
    if shape != stored {
        return Err(Error::new(
            ErrorCode::Shape,
            format!("destination has shape {shape:?} but '{fqn}' is {stored:?}"),
        ));
    }
    Ok(())
}

/// Checks that the per-dimension arrays of one call agree, and returns ndim.
pub(crate) fn ndim_of(arrays: &[&[u64]]) -> Result<u32> {
    let n = arrays[0].len();
    if arrays.iter().any(|a| a.len() != n) {
        let lens: Vec<usize> = arrays.iter().map(|a| a.len()).collect();
        return Err(Error::new(ErrorCode::Inval, format!("shape arrays have different lengths {lens:?}")));
    }
    u32::try_from(n).map_err(|_| Error::new(ErrorCode::Shape, "too many dimensions"))
}

/// NULL for an empty array (the C ABI allows NULL when ndim is 0).
pub(crate) fn ptr_or_null(a: &[u64]) -> *const u64 {
    if a.is_empty() {
        std::ptr::null()
    } else {
        a.as_ptr()
    }
}

pub(crate) fn cstring(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::new(ErrorCode::Inval, format!("{what} {s:?} contains a NUL byte")))
}

#[cfg(unix)]
pub(crate) fn path_cstring(p: &std::path::Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::new(ErrorCode::Inval, format!("path {} contains a NUL byte", p.display())))
}

#[cfg(not(unix))]
pub(crate) fn path_cstring(p: &std::path::Path) -> Result<CString> {
    let s = p.to_str().ok_or_else(|| Error::new(ErrorCode::Inval, format!("path {} is not UTF-8", p.display())))?;
    cstring("path", s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_order_needs_the_product() {
        assert!(check_view(12, &[3, 4], None).is_ok());
        assert!(check_view(13, &[3, 4], None).is_ok());
        assert_eq!(check_view(11, &[3, 4], None).unwrap_err().kind(), ErrorCode::Range);
        assert!(check_view(0, &[0, 4], None).is_ok());
        assert!(check_view(1, &[], None).is_ok());
        assert!(check_view(0, &[], None).is_err());
    }

    #[test]
    fn destinations_in_c_order_are_exact() {
        assert!(check_destination("w", 12, &[3, 4], None).is_ok());
        let e = check_destination("w", 13, &[3, 4], None).unwrap_err();
        assert_eq!(e.kind(), ErrorCode::Shape);
        assert_eq!(e.message(), "destination holds 13 elements but the box [3, 4] of 'w' has 12");
        assert_eq!(check_destination("w", 11, &[3, 4], None).unwrap_err().kind(), ErrorCode::Shape);
        assert_eq!(check_destination("w", 0, &[u64::MAX, 2], None).unwrap_err().kind(), ErrorCode::Shape);
        assert!(check_destination("s", 1, &[], None).is_ok());
        assert!(check_destination("e", 0, &[0, 4], None).is_ok());
        // With a layout, room is what counts (a box inside a larger buffer).
        assert!(check_destination("w", 100, &[3, 4], Some(&Strided::new(&[10, 1]))).is_ok());
        assert_eq!(whole_elements("h", 7, 2).unwrap_err().kind(), ErrorCode::Shape);
        assert_eq!(whole_elements("h", 8, 2).unwrap(), 4);
        let e = check_whole("w", &[6, 7], &[6, 8]).unwrap_err();
        assert_eq!((e.kind(), e.message()), (ErrorCode::Shape, "destination has shape [6, 7] but 'w' is [6, 8]"));
    }

    #[test]
    fn strided_bounds() {
        // Transpose of 3x4 row-major: 4x3 box, strides [1, 4].
        assert!(check_view(12, &[4, 3], Some(&Strided::new(&[1, 4]))).is_ok());
        assert!(check_view(11, &[4, 3], Some(&Strided::new(&[1, 4]))).is_err());
        // Reversed rows.
        let rev = [-4i64, 1];
        assert!(check_view(12, &[3, 4], Some(&Strided::new(&rev).first(8))).is_ok());
        assert!(check_view(12, &[3, 4], Some(&Strided::new(&rev).first(7))).is_err());
        // Broadcast (zero stride).
        assert!(check_view(4, &[100, 4], Some(&Strided::new(&[0, 1]))).is_ok());
        // Wrong number of strides.
        assert_eq!(check_view(12, &[3, 4], Some(&Strided::new(&[1]))).unwrap_err().kind(), ErrorCode::Inval);
        // Empty box anywhere up to the end.
        assert!(check_view(12, &[0, 4], Some(&Strided::new(&[4, 1]).first(12))).is_ok());
        assert!(check_view(12, &[0, 4], Some(&Strided::new(&[4, 1]).first(13))).is_err());
        // Overflowing reach is an error, not a wrap.
        assert!(check_view(12, &[u64::MAX, 1], Some(&Strided::new(&[i64::MAX, 1]))).is_err());
    }
}
