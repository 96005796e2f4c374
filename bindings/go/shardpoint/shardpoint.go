// Package shardpoint is the Go binding of shardpoint, a checkpoint library for tensors sharded
// across ranks. It translates the C ABI (shardpoint.h) into Go: handles with Close, errors with
// codes, typed slices through generics, and collectives written in Go.
//
// Lifetimes: the library keeps pointers to tensor data between Save.AddTensorRaw (or SaveTensor)
// and Save.Commit, and to destinations between Load.AddTensorRaw (or LoadTensor) and
// Load.Execute. The binding pins that Go memory with runtime.Pinner (no copy) until the commit or
// execute returns or the handle is closed. The caller must not modify saved data, nor read or
// write destinations, in between.
package shardpoint

/*
#cgo pkg-config: shardpoint
#include <stdlib.h>
#include "shardpoint.h"
*/
import "C"

import (
	"fmt"
	"reflect"
	"unsafe"
)

// Version of the binding's header; compare with VersionString() for the loaded library.
const (
	HeaderVersionNumber = C.SHARDPOINT_VERSION_NUMBER
	HeaderVersionString = C.SHARDPOINT_VERSION_STRING
	// FormatMajor is the checkpoint format major version the header describes.
	FormatMajor = C.SHARDPOINT_FORMAT_MAJOR
	// MaxNDim is the largest number of dimensions a tensor may have.
	MaxNDim = C.SHARDPOINT_MAX_NDIM
)

// VersionNumber returns the loaded library's version as major*10000 + minor*100 + patch.
func VersionNumber() uint32 { return uint32(C.shardpoint_version_number()) }

// VersionString returns the loaded library's version ("0.1.0").
func VersionString() string { return C.GoString(C.shardpoint_version_string()) }

// DType is an element type. Values equal the C enum shardpoint_dtype.
type DType int32

const (
	Bool       DType = C.SHARDPOINT_DTYPE_BOOL
	U8         DType = C.SHARDPOINT_DTYPE_U8
	I8         DType = C.SHARDPOINT_DTYPE_I8
	I16        DType = C.SHARDPOINT_DTYPE_I16
	I32        DType = C.SHARDPOINT_DTYPE_I32
	I64        DType = C.SHARDPOINT_DTYPE_I64
	U16        DType = C.SHARDPOINT_DTYPE_U16
	U32        DType = C.SHARDPOINT_DTYPE_U32
	U64        DType = C.SHARDPOINT_DTYPE_U64
	F16        DType = C.SHARDPOINT_DTYPE_F16
	BF16       DType = C.SHARDPOINT_DTYPE_BF16
	F32        DType = C.SHARDPOINT_DTYPE_F32
	F64        DType = C.SHARDPOINT_DTYPE_F64
	Complex64  DType = C.SHARDPOINT_DTYPE_COMPLEX64
	Complex128 DType = C.SHARDPOINT_DTYPE_COMPLEX128
	F8E4M3FN   DType = C.SHARDPOINT_DTYPE_F8_E4M3FN
	F8E5M2     DType = C.SHARDPOINT_DTYPE_F8_E5M2

	// NoDType is the dtype the reader reports for bytes entries.
	NoDType DType = -1
)

// DTypeCount is the number of dtypes (they are 0..DTypeCount-1).
const DTypeCount = C.SHARDPOINT_DTYPE_COUNT

// Size returns the size of one element in bytes, 0 for an unknown dtype.
func (d DType) Size() int { return int(C.shardpoint_dtype_size(C.int32_t(d))) }

// String returns the canonical name ("f32", "bf16"), or "dtype(N)" for an unknown value.
func (d DType) String() string {
	p := C.shardpoint_dtype_name(C.int32_t(d))
	if p == nil {
		return fmt.Sprintf("dtype(%d)", int32(d))
	}
	return C.GoString(p)
}

// ParseDType parses a canonical dtype name ("f32", "complex64", "f8_e4m3fn").
func ParseDType(name string) (DType, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var out C.int32_t
	if err := call(func() C.int { return C.shardpoint_dtype_from_name(cname, &out) }); err != nil {
		return 0, err
	}
	return DType(out), nil
}

// Element is the set of Go types that map to a dtype one to one: bool, the fixed-size integers,
// float32/64 and complex64/128 (and named types over them). f16, bf16 and the f8 types have no Go
// type: pass them as []byte with an explicit DType (see AsBytes).
type Element interface {
	~bool | ~uint8 | ~int8 | ~int16 | ~int32 | ~int64 | ~uint16 | ~uint32 | ~uint64 |
		~float32 | ~float64 | ~complex64 | ~complex128
}

// DTypeOf returns the dtype of Go element type T.
func DTypeOf[T Element]() DType {
	switch reflect.TypeFor[T]().Kind() {
	case reflect.Bool:
		return Bool
	case reflect.Uint8:
		return U8
	case reflect.Int8:
		return I8
	case reflect.Int16:
		return I16
	case reflect.Int32:
		return I32
	case reflect.Int64:
		return I64
	case reflect.Uint16:
		return U16
	case reflect.Uint32:
		return U32
	case reflect.Uint64:
		return U64
	case reflect.Float32:
		return F32
	case reflect.Float64:
		return F64
	case reflect.Complex64:
		return Complex64
	case reflect.Complex128:
		return Complex128
	}
	panic("shardpoint: unreachable element kind") // the Element constraint admits nothing else
}

// AsBytes returns the memory of s as a byte slice (no copy), e.g. to save a []uint16 that holds
// bf16 values with Save.AddTensorRaw. The machine must be little-endian, as the format is.
func AsBytes[T Element](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(zero)))
}

// Kind says whether an entry is a tensor or an opaque byte blob.
type Kind int32

const (
	KindTensor Kind = C.SHARDPOINT_ENTRY_TENSOR
	KindBytes  Kind = C.SHARDPOINT_ENTRY_BYTES
)

func (k Kind) String() string {
	switch k {
	case KindTensor:
		return "tensor"
	case KindBytes:
		return "bytes"
	}
	return fmt.Sprintf("kind(%d)", int32(k))
}

// Transform is what was applied to a stored extent.
type Transform int32

const (
	TransformNone       Transform = C.SHARDPOINT_TRANSFORM_NONE
	TransformDeflate    Transform = C.SHARDPOINT_TRANSFORM_DEFLATE     // one zlib stream per chunk
	TransformZlibBlocks Transform = C.SHARDPOINT_TRANSFORM_ZLIB_BLOCKS // format 2: each block alone, zlib
	TransformZstdBlocks Transform = C.SHARDPOINT_TRANSFORM_ZSTD_BLOCKS // format 2: each block alone, zstd
)

// Codec is how a save compresses its chunks (SaveOptions.Codec).
type Codec uint32

const (
	// CodecDefault: as CompressionLevel says (0 raw, 1..9 one zlib stream per chunk).
	CodecDefault Codec = C.SHARDPOINT_CODEC_DEFAULT
	// CodecDeflateStream: one zlib stream per chunk, readable by every format 1 reader.
	CodecDeflateStream Codec = C.SHARDPOINT_CODEC_DEFLATE_STREAM
	// CodecZlib and CodecZstd compress every block alone (format 2): on all cores, and a partial
	// load restores only its blocks.
	CodecZlib Codec = C.SHARDPOINT_CODEC_ZLIB
	CodecZstd Codec = C.SHARDPOINT_CODEC_ZSTD
)

func (t Transform) String() string {
	switch t {
	case TransformNone:
		return "none"
	case TransformDeflate:
		return "deflate"
	case TransformZlibBlocks:
		return "zlib-blocks"
	case TransformZstdBlocks:
		return "zstd-blocks"
	}
	return fmt.Sprintf("transform(%d)", int32(t))
}

// cstrings converts Go strings to C strings; free releases them all.
type cstrings []*C.char

func (cs *cstrings) add(s string) *C.char {
	p := C.CString(s)
	*cs = append(*cs, p)
	return p
}

func (cs cstrings) free() {
	for _, p := range cs {
		C.free(unsafe.Pointer(p))
	}
}

// u64ptr returns a pointer to the first value, or NULL for an empty slice. The C side only
// borrows these arrays for the duration of a call.
func u64ptr(s []uint64) *C.uint64_t {
	if len(s) == 0 {
		return nil
	}
	return (*C.uint64_t)(unsafe.Pointer(&s[0]))
}

func i64ptr(s []int64) *C.int64_t {
	if len(s) == 0 {
		return nil
	}
	return (*C.int64_t)(unsafe.Pointer(&s[0]))
}
