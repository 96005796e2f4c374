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
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// LoadOptions are the options of a reader and the loads made from it. The zero value (or a nil
// pointer) means the defaults.
type LoadOptions struct {
	NoVerify     bool // skip CRC-32 checks of tensor and blob bytes
	AllowPartial bool // requests for entries not in the checkpoint are skipped (see Load.Skipped)
	IOThreads    int  // worker threads for reads and checksums; 0: one per core
}

// Reader is an open checkpoint: its validated metadata and the directory of its files. Its query
// and read methods are safe for concurrent use.
type Reader struct {
	mu    sync.RWMutex // read-locked by every use, write-locked by Close
	ptr   *C.shardpoint_reader
	loads atomic.Int64 // open loads made from this reader
	// verifyMu serializes verifies that install a progress callback (one per reader).
	verifyMu sync.Mutex
}

// StorageInfo is what the checkpoint says about the save that made it.
type StorageInfo struct {
	CheckpointID     string
	SaveID           string // unique per save
	LibraryVersion   string // of the library that wrote it
	Created          time.Time
	WorldSize        int // ranks that saved it
	FormatMajor      uint32
	FormatMinor      uint32
	Alignment        uint32 // extent alignment used by the writer
	FileCount        uint64 // data files
	TotalStoredBytes uint64 // sum of stored extent lengths
}

// EntryInfo describes one entry (a tensor or a blob). The values are copies: they outlive the
// reader.
type EntryInfo struct {
	Index        int // position in the reader's entries (sorted by FQN)
	FQN          string
	Kind         Kind
	DType        DType    // NoDType for bytes entries
	Shape        []uint64 // nil for scalars and bytes entries
	ChunkCount   int      // saved chunks (bytes entries: 1)
	Numel        uint64   // elements of the global shape (bytes: the length)
	NBytes       uint64   // raw bytes of the whole tensor or blob
	StoredBytes  uint64   // bytes on disk (less than NBytes when compressed)
	CoveredNumel uint64   // elements covered by saved chunks; < Numel: partly saved
}

// ChunkInfo describes one saved chunk of an entry and where its bytes are.
type ChunkInfo struct {
	Offsets      []uint64
	Sizes        []uint64
	File         string // data file name relative to the checkpoint directory
	FileOffset   uint64
	StoredLength uint64
	RawLength    uint64
	CRC32        uint32 // of the stored bytes
	Transform    Transform
	WriterRank   int
	ShuffleWidth uint32 // block transforms: element size of the byte shuffle; 0: none
}

// OpenReader opens the checkpoint in dir: reads and validates its metadata without touching
// tensor bytes. opts may be nil.
func OpenReader(dir string, opts *LoadOptions) (*Reader, error) {
	return OpenReaderShared(dir, opts, nil)
}

// OpenReaderShared is OpenReader, collective over comm (nil: one process): rank 0 alone reads
// the metadata file and broadcasts it, so a job makes one metadata read, not one per rank. When
// rank 0 cannot read it, every rank fails with rank 0's error code.
func OpenReaderShared(dir string, opts *LoadOptions, comm *Comm) (*Reader, error) {
	var copts C.shardpoint_load_options
	if err := call(func() C.int { return C.shardpoint_load_options_init(&copts, C.SHARDPOINT_LOAD_OPTIONS_VERSION) }); err != nil {
		return nil, err
	}
	if opts != nil {
		if opts.NoVerify {
			copts.flags |= C.SHARDPOINT_LOAD_NO_VERIFY
		}
		if opts.AllowPartial {
			copts.flags |= C.SHARDPOINT_LOAD_ALLOW_PARTIAL
		}
		if opts.IOThreads < 0 || uint64(opts.IOThreads) > math.MaxUint32 {
			return nil, newError(ErrInvalid, "I/O thread count %d out of range", opts.IOThreads)
		}
		copts.io_threads = C.uint32_t(opts.IOThreads)
	}
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	cptr, err := comm.acquire()
	if err != nil {
		return nil, err
	}
	defer comm.release()
	comm.resetCause()
	var ptr *C.shardpoint_reader
	if err := call(func() C.int { return C.shardpoint_reader_open_shared(&ptr, cdir, &copts, cptr) }); err != nil {
		return nil, comm.withCause(err)
	}
	r := &Reader{ptr: ptr}
	runtime.SetFinalizer(r, (*Reader).Close)
	return r, nil
}

// Close frees the reader. It fails with ErrState while a Load made from it is still open.
// Closing twice is a no-op.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ptr == nil {
		return nil
	}
	if n := r.loads.Load(); n > 0 {
		return newError(ErrState, "the reader is still used by %d open loads", n)
	}
	C.shardpoint_reader_free(r.ptr)
	r.ptr = nil
	runtime.SetFinalizer(r, nil)
	return nil
}

// use runs f with the reader's C pointer, holding the read lock so Close cannot free it meanwhile.
func (r *Reader) use(f func(p *C.shardpoint_reader) error) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.ptr == nil {
		return errClosed("reader")
	}
	return f(r.ptr)
}

// StorageInfo returns what the checkpoint says about the save that made it.
func (r *Reader) StorageInfo() (StorageInfo, error) {
	var info StorageInfo
	err := r.use(func(p *C.shardpoint_reader) error {
		var ci C.shardpoint_storage_info
		if err := call(func() C.int { return C.shardpoint_reader_storage_info(p, &ci) }); err != nil {
			return err
		}
		info = StorageInfo{
			CheckpointID:     goString(ci.checkpoint_id),
			SaveID:           goString(ci.save_id),
			LibraryVersion:   goString(ci.library_version),
			Created:          time.Unix(0, int64(ci.created_unix_ns)),
			WorldSize:        int(ci.world_size),
			FormatMajor:      uint32(ci.format_major),
			FormatMinor:      uint32(ci.format_minor),
			Alignment:        uint32(ci.alignment),
			FileCount:        uint64(ci.file_count),
			TotalStoredBytes: uint64(ci.total_stored_bytes),
		}
		return nil
	})
	return info, err
}

// NumEntries returns the number of entries.
func (r *Reader) NumEntries() (int, error) {
	var n C.uint64_t
	err := r.use(func(p *C.shardpoint_reader) error {
		return call(func() C.int { return C.shardpoint_reader_entry_count(p, &n) })
	})
	return int(n), err
}

// Entry returns entry i (0 <= i < NumEntries); entries are sorted by FQN (byte order).
func (r *Reader) Entry(i int) (EntryInfo, error) {
	var e EntryInfo
	err := r.use(func(p *C.shardpoint_reader) error {
		var err error
		e, err = entryAt(p, i)
		return err
	})
	return e, err
}

// Entries returns every entry, sorted by FQN.
func (r *Reader) Entries() ([]EntryInfo, error) {
	var out []EntryInfo
	err := r.use(func(p *C.shardpoint_reader) error {
		var n C.uint64_t
		if err := call(func() C.int { return C.shardpoint_reader_entry_count(p, &n) }); err != nil {
			return err
		}
		out = make([]EntryInfo, 0, int(n))
		for i := 0; i < int(n); i++ {
			e, err := entryAt(p, i)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// Find returns the entry named fqn (ErrNotFound when there is none).
func (r *Reader) Find(fqn string) (EntryInfo, error) {
	cfqn := C.CString(fqn)
	defer C.free(unsafe.Pointer(cfqn))
	var e EntryInfo
	err := r.use(func(p *C.shardpoint_reader) error {
		var idx C.uint64_t
		if err := call(func() C.int { return C.shardpoint_reader_find(p, cfqn, &idx) }); err != nil {
			return err
		}
		var err error
		e, err = entryAt(p, int(idx))
		return err
	})
	return e, err
}

func entryAt(p *C.shardpoint_reader, i int) (EntryInfo, error) {
	if i < 0 {
		return EntryInfo{}, newError(ErrRange, "entry index %d", i)
	}
	var ci C.shardpoint_entry_info
	if err := call(func() C.int { return C.shardpoint_reader_entry_info(p, C.uint64_t(i), &ci) }); err != nil {
		return EntryInfo{}, err
	}
	return EntryInfo{
		Index:        i,
		FQN:          goString(ci.fqn),
		Kind:         Kind(ci.kind),
		DType:        DType(ci.dtype),
		Shape:        goU64s(ci.shape, ci.ndim),
		ChunkCount:   int(ci.chunk_count),
		Numel:        uint64(ci.numel),
		NBytes:       uint64(ci.nbytes),
		StoredBytes:  uint64(ci.stored_bytes),
		CoveredNumel: uint64(ci.covered_numel),
	}, nil
}

// Chunk returns chunk c of entry i.
func (r *Reader) Chunk(i, c int) (ChunkInfo, error) {
	var out ChunkInfo
	err := r.use(func(p *C.shardpoint_reader) error {
		var err error
		out, err = chunkAt(p, i, c)
		return err
	})
	return out, err
}

// Chunks returns every saved chunk of entry i.
func (r *Reader) Chunks(i int) ([]ChunkInfo, error) {
	var out []ChunkInfo
	err := r.use(func(p *C.shardpoint_reader) error {
		e, err := entryAt(p, i)
		if err != nil {
			return err
		}
		out = make([]ChunkInfo, 0, e.ChunkCount)
		for c := 0; c < e.ChunkCount; c++ {
			ch, err := chunkAt(p, i, c)
			if err != nil {
				return err
			}
			out = append(out, ch)
		}
		return nil
	})
	return out, err
}

func chunkAt(p *C.shardpoint_reader, i, c int) (ChunkInfo, error) {
	if i < 0 || c < 0 {
		return ChunkInfo{}, newError(ErrRange, "entry %d chunk %d", i, c)
	}
	// ndim is not in the chunk struct: take it from the entry.
	var ei C.shardpoint_entry_info
	var ci C.shardpoint_chunk_info
	err := call(func() C.int {
		if rc := C.shardpoint_reader_entry_info(p, C.uint64_t(i), &ei); rc != 0 {
			return rc
		}
		return C.shardpoint_reader_chunk_info(p, C.uint64_t(i), C.uint64_t(c), &ci)
	})
	if err != nil {
		return ChunkInfo{}, err
	}
	return ChunkInfo{
		Offsets:      goU64s(ci.offsets, ei.ndim),
		Sizes:        goU64s(ci.sizes, ei.ndim),
		File:         goString(ci.file),
		FileOffset:   uint64(ci.file_offset),
		StoredLength: uint64(ci.stored_length),
		RawLength:    uint64(ci.raw_length),
		CRC32:        uint32(ci.crc32),
		Transform:    Transform(ci.transform),
		WriterRank:   int(ci.writer_rank),
		ShuffleWidth: uint32(ci.shuffle_width),
	}, nil
}

// Metadata returns the user key/value pairs.
func (r *Reader) Metadata() (map[string]string, error) {
	out := map[string]string{}
	err := r.use(func(p *C.shardpoint_reader) error {
		var n C.uint64_t
		if err := call(func() C.int { return C.shardpoint_reader_metadata_count(p, &n) }); err != nil {
			return err
		}
		for i := C.uint64_t(0); i < n; i++ {
			var k, v *C.char
			if err := call(func() C.int { return C.shardpoint_reader_metadata_at(p, i, &k, &v) }); err != nil {
				return err
			}
			out[goString(k)] = goString(v)
		}
		return nil
	})
	return out, err
}

// MetadataValue returns the value of user key `key` (ErrNotFound when it is not set).
func (r *Reader) MetadataValue(key string) (string, error) {
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	var out string
	err := r.use(func(p *C.shardpoint_reader) error {
		var v *C.char
		if err := call(func() C.int { return C.shardpoint_reader_metadata_get(p, ckey, &v) }); err != nil {
			return err
		}
		out = goString(v)
		return nil
	})
	return out, err
}

// Verify reads every stored extent and checks its CRC-32 (even with NoVerify).
func (r *Reader) Verify() error { return r.VerifyContext(context.Background(), nil) }

// ReadTensor reads box `box` of tensor fqn into dst in C order: dst must hold exactly the box's
// elements (ErrShape otherwise), and a box from Whole or Rows must have been made for the
// tensor's shape (ErrShape). The dtype follows from T and must be the stored one (ErrDType;
// nothing is converted). Not collective.
func ReadTensor[T Element](r *Reader, fqn string, box Box, dst []T) error {
	return ReadTensorView(r, fqn, box, dst, View{})
}

// ReadTensorView is ReadTensor with the box's elements placed in dst by v.
func ReadTensorView[T Element](r *Reader, fqn string, box Box, dst []T, v View) error {
	buf, esize := bytesOf(dst)
	return r.readTensor(fqn, DTypeOf[T](), box, buf, esize, v)
}

// ReadTensorRaw reads box `box` of tensor fqn, of the given dtype, into raw bytes placed by v
// (counted in elements of dtype).
func (r *Reader) ReadTensorRaw(fqn string, dtype DType, box Box, dst []byte, v View) error {
	return r.readTensor(fqn, dtype, box, dst, dtype.Size(), v)
}

func (r *Reader) readTensor(fqn string, dtype DType, box Box, dst []byte, esize int, v View) error {
	if err := r.checkShape(fqn, box); err != nil {
		return err
	}
	offsets, sizes, p, err := destination(fqn, box, dst, esize, v)
	if err != nil {
		return err
	}
	cfqn := C.CString(fqn)
	defer C.free(unsafe.Pointer(cfqn))
	// dst is borrowed for this call only: cgo keeps it in place while the call runs.
	return r.use(func(rp *C.shardpoint_reader) error {
		return call(func() C.int {
			return C.shardpoint_reader_read_tensor(rp, cfqn, C.int32_t(dtype), C.uint32_t(len(sizes)),
				u64ptr(offsets), u64ptr(sizes), p, i64ptr(v.Strides))
		})
	})
}

// ReadBytesInto reads blob fqn into dst and returns its length (ErrRange when dst is too small).
func (r *Reader) ReadBytesInto(fqn string, dst []byte) (int, error) {
	var p unsafe.Pointer
	if len(dst) > 0 {
		p = unsafe.Pointer(&dst[0])
	}
	cfqn := C.CString(fqn)
	defer C.free(unsafe.Pointer(cfqn))
	var n C.uint64_t
	err := r.use(func(rp *C.shardpoint_reader) error {
		return call(func() C.int {
			return C.shardpoint_reader_read_bytes(rp, cfqn, p, C.uint64_t(len(dst)), &n)
		})
	})
	return int(n), err
}

// ReadBytes reads blob fqn into a new slice.
func (r *Reader) ReadBytes(fqn string) ([]byte, error) {
	e, err := r.Find(fqn)
	if err != nil {
		return nil, err
	}
	var buf []byte
	if e.Kind == KindBytes { // else the library reports ErrKind for a nil buffer
		buf = make([]byte, e.NBytes)
	}
	n, err := r.ReadBytesInto(fqn, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func goString(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

// goU64s copies n values owned by the library into a Go slice (nil when n is 0).
func goU64s(p *C.uint64_t, n C.uint32_t) []uint64 {
	if n == 0 || p == nil {
		return nil
	}
	src := unsafe.Slice((*uint64)(unsafe.Pointer(p)), int(n))
	return append([]uint64(nil), src...)
}
