//! With the `ndarray` feature: whole tensors and boxes read into `ndarray::ArrayD`, and arrays
//! offered to a save without copying.

use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn};

use crate::dtype::Element;
use crate::error::{Error, ErrorCode, Result};
use crate::layout::Strided;
use crate::reader::Reader;
use crate::save::Save;

fn too_large() -> Error {
    Error::new(ErrorCode::NoMem, "tensor too large for this platform")
}

fn usize_shape(sizes: &[u64]) -> Result<Vec<usize>> {
    sizes.iter().map(|&s| usize::try_from(s).map_err(|_| too_large())).collect()
}

impl Reader {
    /// Reads the whole tensor `fqn` into a new C-order array of its shape.
    pub fn read_array<T: Element>(&self, fqn: &str) -> Result<ArrayD<T>> {
        let (data, shape) = self.read_tensor_vec::<T>(fqn)?;
        ArrayD::from_shape_vec(IxDyn(&usize_shape(&shape)?), data)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("shape of '{fqn}': {e}")))
    }

    /// Reads the box at `offsets` with `sizes` of tensor `fqn` into a new C-order array.
    pub fn read_array_box<T: Element>(&self, fqn: &str, offsets: &[u64], sizes: &[u64]) -> Result<ArrayD<T>> {
        let dims = usize_shape(sizes)?;
        let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(too_large)?;
        let mut data = vec![T::default(); n];
        self.read_tensor(fqn, offsets, sizes, &mut data)?;
        ArrayD::from_shape_vec(IxDyn(&dims), data)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("shape of '{fqn}': {e}")))
    }
}

impl<'c, 'd> Save<'c, 'd> {
    /// Offers `array` as the chunk at `chunk_offsets` of a tensor of `global_shape` (the whole
    /// tensor when both are None), borrowed until the commit. Any memory order is described to the
    /// library by strides (C order, Fortran order, transposed, reversed axes), as long as the
    /// elements occupy one contiguous block; a strided view (e.g. every other row) must be copied
    /// first (`.as_standard_layout()`): `Range` otherwise.
    pub fn add_array<T: Element, S: Data<Elem = T>, D: Dimension>(
        &mut self,
        fqn: &str,
        array: &'d ArrayBase<S, D>,
        global_shape: Option<&[u64]>,
        chunk_offsets: Option<&[u64]>,
    ) -> Result<()> {
        let sizes: Vec<u64> = array.shape().iter().map(|&d| d as u64).collect();
        let zeros = vec![0u64; sizes.len()];
        let shape = global_shape.unwrap_or(&sizes);
        let offsets = chunk_offsets.unwrap_or(&zeros);
        if let Some(data) = array.as_slice() {
            return self.add_tensor(fqn, shape, offsets, &sizes, data);
        }
        let Some(data) = array.as_slice_memory_order() else {
            return Err(Error::new(
                ErrorCode::Range,
                format!("'{fqn}': the array's elements are not one contiguous block; save .as_standard_layout() of it"),
            ));
        };
        // The logical first element's place in the block, and the strides in elements.
        let first = (array.as_ptr() as usize - data.as_ptr() as usize) / std::mem::size_of::<T>().max(1);
        let strides: Vec<i64> = array.strides().iter().map(|&s| s as i64).collect();
        self.add_tensor_strided(fqn, shape, offsets, &sizes, data, Strided::new(&strides).first(first))
    }
}
