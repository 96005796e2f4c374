package shardpoint

import (
	"math"
	"math/bits"
	"slices"
	"unsafe"
)

// Box is a box of a tensor: it starts at Offsets[d] and spans Sizes[d] elements along dimension
// d. Offsets may be nil (all zeros). A 0-d (scalar) tensor has the empty box, Box{}.
//
// A Box written out (Box{Offsets, Sizes}) is an explicit request for that box. Whole and Rows
// also remember the tensor shape they were given: a load or save with such a box fails with
// ErrShape when the tensor's actual shape differs, so a destination sized for another shape is
// never filled in part.
type Box struct {
	Offsets []uint64
	Sizes   []uint64
	of      []uint64 // the tensor shape Whole or Rows was given; nil for a box written out
}

// Whole returns the box that covers a whole tensor of the given shape. Loading it from a tensor
// of another shape fails with ErrShape, naming both shapes.
func Whole(shape []uint64) Box {
	return Box{Offsets: make([]uint64, len(shape)), Sizes: append([]uint64(nil), shape...),
		of: append([]uint64{}, shape...)}
}

// Rows returns the box of rows [lo, hi) of a tensor of the given shape (other dimensions whole).
// Like Whole, it fails with ErrShape on a tensor of another shape.
func Rows(shape []uint64, lo, hi uint64) Box {
	b := Whole(shape)
	b.Offsets[0], b.Sizes[0] = lo, hi-lo
	return b
}

// resolve returns explicit offsets and sizes. When shape is given (saving) and the box is the
// zero Box, the box is the whole tensor.
func (b Box) resolve(shape []uint64, saving bool) (offsets, sizes []uint64, err error) {
	sizes = b.Sizes
	if saving && b.Sizes == nil && b.Offsets == nil {
		sizes = shape
	}
	offsets = b.Offsets
	if offsets == nil {
		offsets = make([]uint64, len(sizes))
	}
	if len(offsets) != len(sizes) {
		return nil, nil, newError(ErrInvalid, "box has %d offsets but %d sizes", len(offsets), len(sizes))
	}
	if saving && len(sizes) != len(shape) {
		return nil, nil, newError(ErrShape, "box has %d dimensions but the tensor has %d", len(sizes), len(shape))
	}
	return offsets, sizes, nil
}

// View places the elements of a chunk in a slice. The chunk's first element is at index Start
// (counted in elements, not bytes) and Strides (one per dimension, in elements, negative or zero
// allowed) locate the others. The zero View means C order (row-major, contiguous) from index 0.
type View struct {
	Start   int
	Strides []int64
}

// Strided returns a View starting at element start with the given element strides.
func Strided(start int, strides ...int64) View { return View{Start: start, Strides: strides} }

// COrder returns the element strides of a contiguous row-major array of the given shape, e.g.
// to address a sub-box of a larger array: View{Start: ..., Strides: COrder(parentShape)}.
func COrder(shape []uint64) []int64 {
	st := make([]int64, len(shape))
	acc := int64(1)
	for d := len(shape) - 1; d >= 0; d-- {
		st[d] = acc
		acc *= int64(shape[d])
	}
	return st
}

// place checks that every element the library may touch lies inside a slice of n elements (the
// library trusts the pointer it is given, so this is what keeps Go memory safe). It returns the
// index of the first element and whether the box holds no element at all.
func (v View) place(sizes []uint64, n int) (start int, empty bool, err error) {
	for _, s := range sizes {
		if s == 0 {
			return 0, true, nil
		}
	}
	if v.Strides != nil && len(v.Strides) != len(sizes) {
		return 0, false, newError(ErrInvalid, "view has %d strides but the box has %d dimensions", len(v.Strides), len(sizes))
	}
	if v.Start < 0 {
		return 0, false, newError(ErrRange, "view start %d is negative", v.Start)
	}
	lo, hi := int64(v.Start), int64(v.Start)
	if v.Strides == nil {
		// C order: the elements are Start .. Start+numel-1.
		numel := uint64(1)
		for _, s := range sizes {
			h, l := bits.Mul64(numel, s)
			if h != 0 || l > math.MaxInt64 {
				return 0, false, newError(ErrRange, "box of %v elements is too large", sizes)
			}
			numel = l
		}
		if numel-1 > uint64(math.MaxInt64-hi) {
			return 0, false, newError(ErrRange, "box of %v elements is too large", sizes)
		}
		hi += int64(numel - 1)
	} else {
		for d, s := range sizes {
			st := v.Strides[d]
			mag := uint64(st)
			if st < 0 {
				mag = uint64(-st) // st == MinInt64 gives 1<<63, rejected below
			}
			h, ext := bits.Mul64(s-1, mag)
			if h != 0 || ext > math.MaxInt64 {
				return 0, false, newError(ErrRange, "stride %d along dimension %d leaves any slice", st, d)
			}
			if st >= 0 {
				if ext > uint64(math.MaxInt64-hi) {
					return 0, false, newError(ErrRange, "stride %d along dimension %d leaves any slice", st, d)
				}
				hi += int64(ext)
			} else {
				lo -= int64(ext) // cannot overflow: lo >= 0 and ext <= MaxInt64
				if lo < 0 {
					break
				}
			}
		}
	}
	if lo < 0 || hi >= int64(n) {
		return 0, false, newError(ErrRange,
			"the box %v with start %d and strides %v reaches elements %d..%d outside a slice of %d elements",
			sizes, v.Start, v.Strides, lo, hi, n)
	}
	return v.Start, false, nil
}

// destination resolves a read request's box and checks dst against it: with the zero View (C
// order from element 0) dst must hold exactly the box's elements, no more and no fewer
// (ErrShape); with an explicit View every element the box places must lie inside dst
// (ErrRange). It returns the box and the pointer to hand to the C ABI.
func destination(fqn string, box Box, dst []byte, esize int, v View) (offsets, sizes []uint64, p unsafe.Pointer, err error) {
	if offsets, sizes, err = box.resolve(nil, false); err != nil {
		return nil, nil, nil, err
	}
	if v.Start == 0 && v.Strides == nil && esize > 0 && len(dst)%esize == 0 {
		numel, ok := uint64(1), true
		for _, s := range sizes {
			h, l := bits.Mul64(numel, s)
			ok = ok && h == 0
			numel = l
		}
		if !ok || numel != uint64(len(dst)/esize) {
			return nil, nil, nil, newError(ErrShape, "destination holds %d elements but the box %v+%v of %q has %d",
				len(dst)/esize, offsets, sizes, fqn, numel)
		}
	}
	if p, err = elementPointer(dst, esize, sizes, v); err != nil {
		return nil, nil, nil, err
	}
	return offsets, sizes, p, nil
}

// checkShape fails with ErrShape when box was made by Whole or Rows for a shape other than the
// one tensor fqn has in r. A missing entry or a bytes entry is left to the library (ErrNotFound,
// a skip under AllowPartial, or ErrKind).
func (r *Reader) checkShape(fqn string, box Box) error {
	if box.of == nil {
		return nil
	}
	e, err := r.Find(fqn)
	if err != nil || e.Kind != KindTensor || slices.Equal(e.Shape, box.of) {
		return nil
	}
	if slices.Equal(box.Sizes, box.of) && !slices.ContainsFunc(box.Offsets, func(o uint64) bool { return o != 0 }) {
		return newError(ErrShape, "destination has shape %v but %q is %v", box.of, fqn, shapeOf(e.Shape))
	}
	return newError(ErrShape, "the box %v+%v was made for shape %v but %q is %v", box.Offsets, box.Sizes, box.of, fqn, shapeOf(e.Shape))
}

// shapeOf prints a scalar's shape as [] (EntryInfo.Shape is nil then).
func shapeOf(shape []uint64) []uint64 {
	if shape == nil {
		return []uint64{}
	}
	return shape
}

// elementPointer checks the view against buf (elements of esize bytes) and returns the address of
// the box's first element, or nil when the box is empty.
func elementPointer(buf []byte, esize int, sizes []uint64, v View) (unsafe.Pointer, error) {
	if esize <= 0 {
		return nil, newError(ErrInvalid, "unknown dtype")
	}
	if len(buf)%esize != 0 {
		return nil, newError(ErrInvalid, "buffer of %d bytes is not a whole number of %d-byte elements", len(buf), esize)
	}
	start, empty, err := v.place(sizes, len(buf)/esize)
	if err != nil || empty {
		return nil, err
	}
	return unsafe.Pointer(&buf[start*esize]), nil
}

// bytesOf views a typed slice as bytes (no copy).
func bytesOf[T Element](s []T) ([]byte, int) {
	var zero T
	return AsBytes(s), int(unsafe.Sizeof(zero))
}
