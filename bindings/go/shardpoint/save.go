package shardpoint

/*
#include <stdlib.h>
#include "shardpoint.h"
*/
import "C"

import (
	"context"
	"math"
	"runtime"
	"slices"
	"sync"
	"unsafe"
)

// SaveOptions are the options of a save. The zero value (or a nil pointer) means the defaults.
// Saves are durable by default: data files, metadata and the directory are fsynced before Commit
// returns.
type SaveOptions struct {
	Overwrite bool // replace a checkpoint already at the path (else ErrExists)
	// Deprecated: saves are durable by default and Fsync has no effect (false does not opt out;
	// that is NoFsync).
	Fsync bool
	// NoFsync skips every fsync (SHARDPOINT_SAVE_NO_FSYNC). Faster, and safe against a crash of
	// the process, but NOT against a power loss or a kernel crash: after one, the new checkpoint
	// (and with Overwrite the previous one too) may be lost or unreadable.
	NoFsync bool
	// AllowPartial accepts tensors that the ranks together leave partly uncovered
	// (SHARDPOINT_SAVE_ALLOW_PARTIAL); without it such a save fails with ErrUncovered and
	// writes nothing.
	AllowPartial bool
	// With CodecDefault: 0 stores raw, 1..9 deflates at that level. With another codec: its level
	// (zlib 1..9, zstd 1..19), 0 for its fast default.
	CompressionLevel int
	Codec            Codec
	Shuffle          bool   // byte-shuffle each block before compressing (block codecs only)
	IOThreads        int    // worker threads for I/O and checksums; 0: one per core
	Alignment        uint64 // extent alignment in bytes, a power of two; 0: 4096
	CheckpointID     string // recorded in the metadata; "": the directory's name
}

const (
	flagOverwrite    = C.SHARDPOINT_SAVE_OVERWRITE
	flagNoFsync      = C.SHARDPOINT_SAVE_NO_FSYNC
	flagAllowPartial = C.SHARDPOINT_SAVE_ALLOW_PARTIAL
)

// saveFlags returns the SHARDPOINT_SAVE_* flags of opts (nil: the defaults). The deprecated
// Fsync never sets SHARDPOINT_SAVE_FSYNC, which would contradict NoFsync.
func saveFlags(opts *SaveOptions) uint32 {
	var flags uint32
	if opts == nil {
		return 0
	}
	if opts.Overwrite {
		flags |= flagOverwrite
	}
	if opts.NoFsync {
		flags |= flagNoFsync
	}
	if opts.AllowPartial {
		flags |= flagAllowPartial
	}
	return flags
}

// Save is a save in progress: add what this rank holds, then Commit (collective). Not safe for
// concurrent use by several goroutines (calls are serialized, not interleaved).
//
// Tensor data and blobs given to a Save are pinned (runtime.Pinner), not copied: they must not
// change until Commit returns. They are unpinned when Commit returns or the Save is closed.
type Save struct {
	mu       sync.Mutex
	ptr      *C.shardpoint_save
	comm     *Comm
	pinner   runtime.Pinner
	cid      *C.char // checkpoint id, kept until the save is freed
	progress ProgressFunc
	async    *asyncState // set by CommitAsync
}

// cSaveOptions is opts in the C struct; the checkpoint id, if any, is C memory the caller frees
// (once the C call that reads it returned).
func cSaveOptions(opts *SaveOptions) (C.shardpoint_save_options, *C.char, error) {
	var copts C.shardpoint_save_options
	if err := call(func() C.int { return C.shardpoint_save_options_init(&copts, C.SHARDPOINT_SAVE_OPTIONS_VERSION) }); err != nil {
		return copts, nil, err
	}
	var cid *C.char
	copts.flags = C.uint32_t(saveFlags(opts))
	if opts != nil {
		if opts.CompressionLevel < math.MinInt32 || opts.CompressionLevel > math.MaxInt32 ||
			opts.IOThreads < 0 || uint64(opts.IOThreads) > math.MaxUint32 {
			return copts, nil, newError(ErrInvalid, "compression level or I/O thread count out of range")
		}
		copts.compression_level = C.int32_t(opts.CompressionLevel)
		copts.codec = C.uint32_t(opts.Codec)
		if opts.Shuffle {
			copts.filters = C.SHARDPOINT_FILTER_SHUFFLE
		}
		copts.io_threads = C.uint32_t(opts.IOThreads)
		copts.alignment = C.uint64_t(opts.Alignment)
		if opts.CheckpointID != "" {
			cid = C.CString(opts.CheckpointID)
			copts.checkpoint_id = cid
		}
	}
	return copts, cid, nil
}

// NewSave starts a save of a checkpoint into directory dir (created when missing). comm may be
// nil (a single process); it must stay open until the Save is closed. Nothing is written before
// Commit.
func NewSave(dir string, comm *Comm, opts *SaveOptions) (*Save, error) {
	copts, cid, err := cSaveOptions(opts)
	if err != nil {
		return nil, err
	}
	cptr, err := comm.acquire()
	if err != nil {
		C.free(unsafe.Pointer(cid))
		return nil, err
	}
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	var ptr *C.shardpoint_save
	if err := call(func() C.int { return C.shardpoint_save_new(&ptr, cdir, cptr, &copts) }); err != nil {
		comm.release()
		C.free(unsafe.Pointer(cid))
		return nil, err
	}
	runtime.KeepAlive(comm)
	s := &Save{ptr: ptr, comm: comm, cid: cid}
	runtime.SetFinalizer(s, (*Save).Close)
	return s, nil
}

// SaveTensor offers the chunk `box` of tensor fqn of the given global shape, read from data in C
// order. The zero Box means the whole tensor. The dtype follows from T.
func SaveTensor[T Element](s *Save, fqn string, shape []uint64, box Box, data []T) error {
	return SaveTensorView(s, fqn, shape, box, data, View{})
}

// SaveTensorView is SaveTensor with the chunk's elements placed in data by v (start and element
// strides, e.g. a transposed or reversed view, or a sub-box of a larger array).
func SaveTensorView[T Element](s *Save, fqn string, shape []uint64, box Box, data []T, v View) error {
	buf, esize := bytesOf(data)
	return s.addTensor(fqn, DTypeOf[T](), shape, box, buf, esize, v)
}

// AddTensorRaw offers a chunk whose elements are raw little-endian bytes of the given dtype (for
// f16, bf16 and the f8 types, or any dtype held as bytes). v counts in elements of dtype.
func (s *Save) AddTensorRaw(fqn string, dtype DType, shape []uint64, box Box, data []byte, v View) error {
	return s.addTensor(fqn, dtype, shape, box, data, dtype.Size(), v)
}

func (s *Save) addTensor(fqn string, dtype DType, shape []uint64, box Box, data []byte, esize int, v View) error {
	if box.of != nil && !slices.Equal(box.of, shape) {
		return newError(ErrShape, "the box %v+%v of %q was made for shape %v but the tensor is %v",
			box.Offsets, box.Sizes, fqn, box.of, shape)
	}
	offsets, sizes, err := box.resolve(shape, true)
	if err != nil {
		return err
	}
	p, err := elementPointer(data, esize, sizes, v)
	if err != nil {
		return err
	}
	var cs cstrings
	defer cs.free()
	cfqn := cs.add(fqn)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return errClosed("save")
	}
	// The library keeps p and reads it during Commit. A pin left by a failed call is released
	// with the others at Commit or Close.
	if p != nil {
		s.pinner.Pin(p)
	}
	return call(func() C.int {
		return C.shardpoint_save_add_tensor(s.ptr, cfqn, C.int32_t(dtype), C.uint32_t(len(shape)),
			u64ptr(shape), u64ptr(offsets), u64ptr(sizes), p, i64ptr(v.Strides))
	})
}

// AddBytes offers an opaque blob under fqn. data is pinned until Commit returns.
func (s *Save) AddBytes(fqn string, data []byte) error {
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	cfqn := C.CString(fqn)
	defer C.free(unsafe.Pointer(cfqn))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return errClosed("save")
	}
	if p != nil {
		s.pinner.Pin(p)
	}
	return call(func() C.int { return C.shardpoint_save_add_bytes(s.ptr, cfqn, p, C.uint64_t(len(data))) })
}

// SetMetadata records a user key/value pair (the coordinator's pairs are the ones kept; setting a
// key twice keeps the last value).
func (s *Save) SetMetadata(key, value string) error {
	var cs cstrings
	defer cs.free()
	ck, cv := cs.add(key), cs.add(value)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return errClosed("save")
	}
	return call(func() C.int { return C.shardpoint_save_set_metadata(s.ptr, ck, cv) })
}

// Commit plans, writes and commits the checkpoint. Collective: every rank of the communicator
// must call it; every rank gets the same outcome. On failure nothing is committed and a
// checkpoint that was at the path before is intact, with one exception: ErrNotDurable means the
// checkpoint was committed but may not survive a power loss. Tensors the ranks leave partly
// uncovered fail with ErrUncovered unless SaveOptions.AllowPartial. A Save can be committed once.
func (s *Save) Commit() error { return s.CommitContext(context.Background()) }

// Close frees the save (an uncommitted save writes nothing) and unpins its data. Closing twice
// is a no-op. It always returns nil; the error is there for io.Closer.
func (s *Save) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return nil
	}
	C.shardpoint_save_free(s.ptr) // waits for an asynchronous commit
	s.ptr = nil
	s.pinner.Unpin()
	if as := s.async; as != nil {
		if as.progress != nil {
			as.progress.Delete()
		}
		if as.own {
			as.staging.Close()
		}
		s.async = nil
	}
	C.free(unsafe.Pointer(s.cid))
	s.cid = nil
	s.comm.release()
	s.comm = nil
	runtime.SetFinalizer(s, nil)
	return nil
}

// TensorChunk is one chunk of a batched add (AddTensors): AddTensorRaw's arguments. Data holds
// raw little-endian elements of DType, placed by View (the zero View: C order from the start).
type TensorChunk struct {
	FQN   string
	DType DType
	Shape []uint64
	Box   Box
	Data  []byte
	View  View
}

// AddTensors offers many chunks in one call of the library, all or nothing: when one is
// refused none of them is kept, and the error names its position in the batch. Each chunk's
// data is pinned until Commit returns, as with AddTensorRaw.
func (s *Save) AddTensors(chunks []TensorChunk) error {
	if len(chunks) == 0 {
		return nil
	}
	type resolved struct {
		offsets, sizes []uint64
		p              unsafe.Pointer
	}
	items := make([]resolved, len(chunks))
	ndims, nstrides := 0, 0
	for i, c := range chunks {
		if c.Box.of != nil && !slices.Equal(c.Box.of, c.Shape) {
			return newError(ErrShape, "item %d of the batch: the box %v+%v of %q was made for shape %v but the tensor is %v",
				i, c.Box.Offsets, c.Box.Sizes, c.FQN, c.Box.of, c.Shape)
		}
		offsets, sizes, err := c.Box.resolve(c.Shape, true)
		if err != nil {
			return err
		}
		p, err := elementPointer(c.Data, c.DType.Size(), sizes, c.View)
		if err != nil {
			return err
		}
		items[i] = resolved{offsets, sizes, p}
		ndims += 3 * len(c.Shape)
		nstrides += len(c.View.Strides)
	}
	// The structs and what they point to live in C memory for the call; only the data pointers
	// are Go memory, pinned.
	var cs cstrings
	defer cs.free()
	structs := (*[1 << 28]C.shardpoint_tensor_chunk)(C.calloc(C.size_t(len(chunks)), C.sizeof_shardpoint_tensor_chunk))[:len(chunks):len(chunks)]
	defer C.free(unsafe.Pointer(&structs[0]))
	dims := (*[1 << 28]C.uint64_t)(C.calloc(C.size_t(ndims+1), 8))[: ndims+1 : ndims+1]
	defer C.free(unsafe.Pointer(&dims[0]))
	strides := (*[1 << 28]C.int64_t)(C.calloc(C.size_t(nstrides+1), 8))[: nstrides+1 : nstrides+1]
	defer C.free(unsafe.Pointer(&strides[0]))
	put := func(at *int, values []uint64) *C.uint64_t {
		if len(values) == 0 {
			return nil
		}
		start := &dims[*at]
		for _, v := range values {
			dims[*at] = C.uint64_t(v)
			*at++
		}
		return start
	}
	at, sat := 0, 0
	for i, c := range chunks {
		st := &structs[i]
		st.fqn = cs.add(c.FQN)
		st.dtype = C.int32_t(c.DType)
		st.ndim = C.uint32_t(len(c.Shape))
		st.global_shape = put(&at, c.Shape)
		st.chunk_offsets = put(&at, items[i].offsets)
		st.chunk_sizes = put(&at, items[i].sizes)
		st.data = items[i].p
		if len(c.View.Strides) > 0 {
			st.strides = &strides[sat]
			for _, v := range c.View.Strides {
				strides[sat] = C.int64_t(v)
				sat++
			}
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return errClosed("save")
	}
	for _, it := range items {
		if it.p != nil {
			s.pinner.Pin(it.p)
		}
	}
	return call(func() C.int {
		return C.shardpoint_save_add_tensors(s.ptr, &structs[0], C.uint64_t(len(chunks)), C.sizeof_shardpoint_tensor_chunk)
	})
}
