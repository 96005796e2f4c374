use std::ffi::{CStr, CString};
use std::fmt;
use std::str::FromStr;

use shardpoint_sys as sys;

use crate::error::{check, Error, ErrorCode, Result};

/// Element types of the format (`shardpoint_dtype`). The discriminants are the C values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Dtype {
    Bool = sys::SHARDPOINT_DTYPE_BOOL,
    U8 = sys::SHARDPOINT_DTYPE_U8,
    I8 = sys::SHARDPOINT_DTYPE_I8,
    I16 = sys::SHARDPOINT_DTYPE_I16,
    I32 = sys::SHARDPOINT_DTYPE_I32,
    I64 = sys::SHARDPOINT_DTYPE_I64,
    U16 = sys::SHARDPOINT_DTYPE_U16,
    U32 = sys::SHARDPOINT_DTYPE_U32,
    U64 = sys::SHARDPOINT_DTYPE_U64,
    F16 = sys::SHARDPOINT_DTYPE_F16,
    Bf16 = sys::SHARDPOINT_DTYPE_BF16,
    F32 = sys::SHARDPOINT_DTYPE_F32,
    F64 = sys::SHARDPOINT_DTYPE_F64,
    Complex64 = sys::SHARDPOINT_DTYPE_COMPLEX64,
    Complex128 = sys::SHARDPOINT_DTYPE_COMPLEX128,
    F8E4m3fn = sys::SHARDPOINT_DTYPE_F8_E4M3FN,
    F8E5m2 = sys::SHARDPOINT_DTYPE_F8_E5M2,
}

impl Dtype {
    /// Every dtype, in C value order.
    pub const ALL: [Dtype; 17] = [
        Dtype::Bool,
        Dtype::U8,
        Dtype::I8,
        Dtype::I16,
        Dtype::I32,
        Dtype::I64,
        Dtype::U16,
        Dtype::U32,
        Dtype::U64,
        Dtype::F16,
        Dtype::Bf16,
        Dtype::F32,
        Dtype::F64,
        Dtype::Complex64,
        Dtype::Complex128,
        Dtype::F8E4m3fn,
        Dtype::F8E5m2,
    ];

    /// The dtype with C value `raw`, if this binding knows it.
    pub fn from_raw(raw: i32) -> Option<Dtype> {
        Dtype::ALL.iter().copied().find(|d| *d as i32 == raw)
    }

    pub fn raw(self) -> i32 {
        self as i32
    }

    /// Bytes per element (`shardpoint_dtype_size`).
    pub fn size(self) -> usize {
        // SAFETY: plain value call.
        unsafe { sys::shardpoint_dtype_size(self as i32) as usize }
    }

    /// Canonical lowercase name (`shardpoint_dtype_name`): "f32", "bf16", "f8_e4m3fn".
    pub fn name(self) -> &'static str {
        // SAFETY: static storage; non-NULL for every known dtype.
        let p = unsafe { sys::shardpoint_dtype_name(self as i32) };
        if p.is_null() {
            return "unknown";
        }
        unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("unknown")
    }

    /// Parses a canonical name (`shardpoint_dtype_from_name`).
    pub fn from_name(name: &str) -> Result<Dtype> {
        let c = CString::new(name).map_err(|_| Error::new(ErrorCode::Inval, "dtype name contains a NUL byte"))?;
        let mut raw = 0i32;
        // SAFETY: valid C string and out-pointer.
        check(unsafe { sys::shardpoint_dtype_from_name(c.as_ptr(), &mut raw) })?;
        Dtype::from_raw(raw)
            .ok_or_else(|| Error::new(ErrorCode::Inval, format!("dtype {raw} is newer than this binding")))
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Dtype> {
        Dtype::from_name(s)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A Rust type whose values are stored as one shardpoint dtype, byte for byte.
///
/// Sealed: implemented for `bool`, `u8`, `i8`, `i16`, `i32`, `i64`, `u16`, `u32`, `u64`, `f32`,
/// `f64`, and with the `half` feature `half::f16` and `half::bf16`. Other dtypes (complex, f8,
/// f16 and bf16 without the feature) go through the `*_raw` methods, which take bytes.
pub trait Element: sealed::Sealed + Copy + Default + Send + Sync + 'static {
    const DTYPE: Dtype;
}

/// Element types for which every bit pattern is a valid value (all but `bool`), so their memory
/// may be viewed and written as plain bytes.
pub trait Pod: Element {}

macro_rules! element {
    ($($t:ty => $d:ident, $pod:tt);+ $(;)?) => {
        $(
            impl sealed::Sealed for $t {}
            impl Element for $t {
                const DTYPE: Dtype = Dtype::$d;
            }
            element!(@pod $t, $pod);
        )+
    };
    (@pod $t:ty, pod) => { impl Pod for $t {} };
    (@pod $t:ty, notpod) => {};
}

element! {
    bool => Bool, notpod;
    u8 => U8, pod;
    i8 => I8, pod;
    i16 => I16, pod;
    i32 => I32, pod;
    i64 => I64, pod;
    u16 => U16, pod;
    u32 => U32, pod;
    u64 => U64, pod;
    f32 => F32, pod;
    f64 => F64, pod;
}

// With the `half` feature: the 16-bit floats of the `half` crate.
#[cfg(feature = "half")]
element! {
    half::f16 => F16, pod;
    half::bf16 => Bf16, pod;
}

/// The bytes of a slice of elements (native byte order; the format is little-endian, as is every
/// platform the library supports).
pub fn as_bytes<T: Element>(s: &[T]) -> &[u8] {
    // SAFETY: every Element type is plain data without padding; u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s)) }
}

/// The bytes of a mutable slice of elements whose every bit pattern is valid, e.g. a `Vec<u16>`
/// that is to receive f16 values through [`crate::Load::add_tensor_raw`].
pub fn as_bytes_mut<T: Pod>(s: &mut [T]) -> &mut [u8] {
    // SAFETY: as above, and any bytes written are a valid T (Pod excludes bool).
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(s)) }
}

/// `bool` destinations are written as raw bytes by the library; a stored byte other than 0 or 1
/// would be an invalid `bool` in Rust. This rewrites any nonzero byte as 1 (true), without ever
/// reading the memory as `bool`.
///
/// # Safety
/// `ptr..ptr+len` must be writable memory that nothing else accesses during the call.
pub(crate) unsafe fn normalize_bools(ptr: *mut u8, len: usize) {
    let bytes = std::slice::from_raw_parts_mut(ptr, len);
    for b in bytes {
        if *b > 1 {
            *b = 1;
        }
    }
}
