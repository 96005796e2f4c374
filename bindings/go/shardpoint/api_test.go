package shardpoint

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestVersionAndDTypes(t *testing.T) {
	if VersionString() != HeaderVersionString || VersionNumber() != HeaderVersionNumber {
		t.Fatalf("library %s (%d), header %s (%d)", VersionString(), VersionNumber(), HeaderVersionString, HeaderVersionNumber)
	}
	names := []string{"bool", "u8", "i8", "i16", "i32", "i64", "u16", "u32", "u64", "f16", "bf16",
		"f32", "f64", "complex64", "complex128", "f8_e4m3fn", "f8_e5m2"}
	sizes := []int{1, 1, 1, 2, 4, 8, 2, 4, 8, 2, 2, 4, 8, 8, 16, 1, 1}
	if len(names) != DTypeCount {
		t.Fatalf("DTypeCount %d", DTypeCount)
	}
	for i, name := range names {
		d, err := ParseDType(name)
		must(t, err)
		if d != DType(i) || d.String() != name || d.Size() != sizes[i] {
			t.Errorf("%s: parsed %d, name %q, size %d", name, d, d.String(), d.Size())
		}
	}
	_, err := ParseDType("float32")
	wantCode(t, err, ErrInvalid)
	if DType(99).Size() != 0 || DType(99).String() != "dtype(99)" {
		t.Errorf("unknown dtype: %d %q", DType(99).Size(), DType(99).String())
	}
	type weight float32
	if DTypeOf[weight]() != F32 || DTypeOf[bool]() != Bool || DTypeOf[complex128]() != Complex128 ||
		DTypeOf[uint16]() != U16 || DTypeOf[int8]() != I8 {
		t.Error("DTypeOf maps Go types to the wrong dtypes")
	}
	if ErrChecksum.Name() != "SHARDPOINT_ECHECKSUM" || Code(-1000).Name() != "SHARDPOINT_UNKNOWN" {
		t.Errorf("code names: %q %q", ErrChecksum.Name(), Code(-1000).Name())
	}
}

// roundTrip saves data as a whole 2-d tensor and returns a check that it loads back equal, with its dtype.
func roundTrip[T Element](t *testing.T, s *Save, fqn string, data []T) func(r *Reader) {
	t.Helper()
	shape := []uint64{2, uint64(len(data) / 2)}
	must(t, SaveTensor(s, fqn, shape, Box{}, data))
	want := slices.Clone(data)
	return func(r *Reader) {
		t.Helper()
		e, err := r.Find(fqn)
		must(t, err)
		if e.Kind != KindTensor || e.DType != DTypeOf[T]() || !slices.Equal(e.Shape, shape) ||
			e.NBytes != uint64(len(data)*DTypeOf[T]().Size()) {
			t.Fatalf("%s: entry %+v", fqn, e)
		}
		equal(t, fqn, readAll[T](t, r, fqn), want)
	}
}

func TestRoundTripDTypes(t *testing.T) {
	dir := ckpt(t)
	s := newSave(t, dir, nil, nil)
	checks := []func(*Reader){
		roundTrip(t, s, "bool", []bool{true, false, false, true, true, true}),
		roundTrip(t, s, "u8", fill(10, func(i int) uint8 { return uint8(250 + i) })),
		roundTrip(t, s, "i8", fill(10, func(i int) int8 { return int8(-128 + 29*i) })),
		roundTrip(t, s, "i16", fill(8, func(i int) int16 { return int16(-30000 + 7919*i) })),
		roundTrip(t, s, "i32", []int32{math.MinInt32, -1, 0, 1, math.MaxInt32, 42}),
		roundTrip(t, s, "i64", []int64{math.MinInt64, -1, 0, 1, math.MaxInt64, 1 << 40}),
		roundTrip(t, s, "u16", fill(6, func(i int) uint16 { return uint16(65535 - 1000*i) })),
		roundTrip(t, s, "u32", []uint32{0, 1, math.MaxUint32, 7, 1 << 31, 3}),
		roundTrip(t, s, "u64", []uint64{0, math.MaxUint64, 1 << 63, 5, 6, 7}),
		roundTrip(t, s, "f32", fill(12, func(i int) float32 { return float32(i)*-1.25 + 0.1 })),
		roundTrip(t, s, "f64", []float64{math.Inf(-1), -0.5, math.SmallestNonzeroFloat64, math.Pi, math.MaxFloat64, math.Inf(1)}),
		roundTrip(t, s, "c64", []complex64{1 + 2i, -3.5i, 0, 4, 5 - 5i, 1e-3}),
		roundTrip(t, s, "c128", []complex128{complex(math.Pi, math.E), -1i, 2, 3, 4i, -9}),
	}
	// bf16 held in a []uint16, saved as raw bytes with an explicit dtype.
	bf16 := []uint16{0x3f80, 0xc000, 0x7f80, 0x0001, 0x4049, 0x0000}
	must(t, s.AddTensorRaw("bf16", BF16, []uint64{3, 2}, Box{}, AsBytes(bf16), View{}))
	must(t, s.Commit())

	r := openReader(t, dir, nil)
	for _, check := range checks {
		check(r)
	}
	got := make([]byte, 12)
	must(t, r.ReadTensorRaw("bf16", BF16, Whole([]uint64{3, 2}), got, View{}))
	if !bytes.Equal(got, AsBytes(bf16)) {
		t.Fatalf("bf16: %x, want %x", got, AsBytes(bf16))
	}
	// The typed API refuses a dtype that differs from the stored one.
	wantCode(t, ReadTensor(r, "bf16", Whole([]uint64{3, 2}), make([]uint16, 6)), ErrDType)
	n, err := r.NumEntries()
	must(t, err)
	if n != len(checks)+1 {
		t.Fatalf("%d entries, want %d", n, len(checks)+1)
	}
}

func TestScalarAndEmptyTensors(t *testing.T) {
	dir := ckpt(t)
	s := newSave(t, dir, nil, nil)
	must(t, SaveTensor(s, "step", nil, Box{}, []int64{1234}))
	must(t, SaveTensor(s, "empty", []uint64{0, 4}, Box{}, []float32{}))
	must(t, s.Commit())
	r := openReader(t, dir, nil)
	got := []int64{0}
	must(t, ReadTensor(r, "step", Box{}, got))
	if got[0] != 1234 {
		t.Fatalf("scalar %d", got[0])
	}
	e, err := r.Find("empty")
	must(t, err)
	if e.Numel != 0 || !slices.Equal(e.Shape, []uint64{0, 4}) {
		t.Fatalf("empty entry %+v", e)
	}
	must(t, ReadTensor(r, "empty", Whole(e.Shape), []float32{}))
}

func TestStridedSources(t *testing.T) {
	dir := ckpt(t)
	s := newSave(t, dir, nil, nil)
	// A 3x4 matrix m[i][j] = 10*i + j held column-major: element (i, j) at j*3 + i.
	colMajor := make([]int32, 12)
	for i := 0; i < 3; i++ {
		for j := 0; j < 4; j++ {
			colMajor[j*3+i] = int32(10*i + j)
		}
	}
	must(t, SaveTensorView(s, "transposed", []uint64{3, 4}, Box{}, colMajor, Strided(0, 1, 3)))
	// Reversed: the tensor's element i is at index 4-i.
	rev := []float64{4, 3, 2, 1, 0}
	must(t, SaveTensorView(s, "reversed", []uint64{5}, Box{}, rev, Strided(4, -1)))
	// Zero stride: one row repeated four times.
	row := []uint16{7, 8, 9}
	must(t, SaveTensorView(s, "broadcast", []uint64{4, 3}, Box{}, row, Strided(0, 0, 1)))
	// A 2x3 sub-box of a 6x6 parent starting at (2, 1).
	parent := fill(36, func(i int) int64 { return int64(i) })
	must(t, SaveTensorView(s, "sub", []uint64{2, 3}, Box{}, parent, View{Start: 2*6 + 1, Strides: COrder([]uint64{6, 6})}))
	must(t, s.Commit())

	r := openReader(t, dir, nil)
	equal(t, "transposed", readAll[int32](t, r, "transposed"), []int32{0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23})
	equal(t, "reversed", readAll[float64](t, r, "reversed"), []float64{0, 1, 2, 3, 4})
	equal(t, "broadcast", readAll[uint16](t, r, "broadcast"), []uint16{7, 8, 9, 7, 8, 9, 7, 8, 9, 7, 8, 9})
	equal(t, "sub", readAll[int64](t, r, "sub"), []int64{13, 14, 15, 19, 20, 21})
}

func TestViewsOutsideTheSliceAreRefused(t *testing.T) {
	s := newSave(t, ckpt(t), nil, nil)
	data := make([]float32, 12)
	shape := []uint64{3, 4}
	// One element too few for C order.
	wantCode(t, SaveTensor(s, "short", shape, Box{}, data[:11]), ErrRange)
	// Strides that reach past the end, before the start, or a negative start.
	wantCode(t, SaveTensorView(s, "far", shape, Box{}, data, Strided(0, 4, 2)), ErrRange)
	wantCode(t, SaveTensorView(s, "before", shape, Box{}, data, Strided(1, -1, 1)), ErrRange)
	wantCode(t, SaveTensorView(s, "neg", shape, Box{}, data, Strided(-1, 4, 1)), ErrRange)
	wantCode(t, SaveTensorView(s, "huge", shape, Box{}, data, Strided(0, math.MaxInt64, 1)), ErrRange)
	wantCode(t, SaveTensorView(s, "rank", shape, Box{}, data, Strided(0, 1)), ErrInvalid)
	wantCode(t, s.AddTensorRaw("ragged", F32, shape, Box{}, make([]byte, 47), View{}), ErrInvalid)
	// The exact fit is accepted: last element index 11 with strides (1, 3).
	must(t, SaveTensorView(s, "fit", shape, Box{}, data, Strided(0, 1, 3)))
	// So is a negative stride that ends at index 0.
	must(t, SaveTensorView(s, "rev", shape, Box{}, data, Strided(11, -4, -1)))
}

func TestStridedDestinations(t *testing.T) {
	dir := ckpt(t)
	s := newSave(t, dir, nil, nil)
	m := fill(9, func(i int) float32 { return float32(i + 1) }) // 3x3, values 1..9
	must(t, SaveTensor(s, "m", []uint64{3, 3}, Box{}, m))
	must(t, s.Commit())
	r := openReader(t, dir, nil)

	// Into the middle of a 5x5 array of -1, at (1, 1).
	big := fill(25, func(int) float32 { return -1 })
	l, err := r.NewLoad(nil)
	must(t, err)
	defer l.Close()
	must(t, LoadTensorView(l, "m", Whole([]uint64{3, 3}), big, View{Start: 6, Strides: []int64{5, 1}}))
	// Transposed, into a column-major buffer.
	tr := make([]float32, 9)
	must(t, LoadTensorView(l, "m", Whole([]uint64{3, 3}), tr, Strided(0, 1, 3)))
	// Rows 1..2, both axes reversed.
	rv := make([]float32, 6)
	must(t, LoadTensorView(l, "m", Rows([]uint64{3, 3}, 1, 3), rv, Strided(5, -3, -1)))
	must(t, l.Execute())

	for i := 0; i < 5; i++ {
		for j := 0; j < 5; j++ {
			want := float32(-1)
			if i >= 1 && i <= 3 && j >= 1 && j <= 3 {
				want = m[(i-1)*3+(j-1)]
			}
			if big[i*5+j] != want {
				t.Fatalf("big[%d][%d] = %v, want %v", i, j, big[i*5+j], want)
			}
		}
	}
	equal(t, "transposed", tr, []float32{1, 4, 7, 2, 5, 8, 3, 6, 9})
	equal(t, "reversed", rv, []float32{9, 8, 7, 6, 5, 4})
	// A destination too small is refused before the library sees it.
	l2, err := r.NewLoad(nil)
	must(t, err)
	defer l2.Close()
	wantCode(t, LoadTensor(l2, "m", Whole([]uint64{3, 3}), make([]float32, 8)), ErrShape)
}

func TestBytesEntries(t *testing.T) {
	dir := ckpt(t)
	blob := fill(3000, func(i int) uint8 { return uint8(i*7 + i/256) })
	s := newSave(t, dir, nil, nil)
	must(t, s.AddBytes("optim.state", blob))
	must(t, s.AddBytes("empty", nil))
	must(t, SaveTensor(s, "t", []uint64{2}, Box{}, []int16{1, 2}))
	must(t, s.Commit())

	r := openReader(t, dir, nil)
	e, err := r.Find("optim.state")
	must(t, err)
	if e.Kind != KindBytes || e.DType != NoDType || e.NBytes != 3000 || e.Numel != 3000 || e.ChunkCount != 1 || e.Shape != nil {
		t.Fatalf("bytes entry %+v", e)
	}
	got, err := r.ReadBytes("optim.state")
	must(t, err)
	if !bytes.Equal(got, blob) {
		t.Fatal("blob differs")
	}
	empty, err := r.ReadBytes("empty")
	must(t, err)
	if len(empty) != 0 {
		t.Fatalf("empty blob has %d bytes", len(empty))
	}
	// Too small a buffer, then a larger one through a Load.
	_, err = r.ReadBytesInto("optim.state", make([]byte, 2999))
	wantCode(t, err, ErrRange)
	big := make([]byte, 4000)
	n, err := r.ReadBytesInto("optim.state", big)
	must(t, err)
	if n != 3000 || !bytes.Equal(big[:n], blob) {
		t.Fatalf("ReadBytesInto: %d bytes", n)
	}
	l, err := r.NewLoad(nil)
	must(t, err)
	defer l.Close()
	dst := make([]byte, 3000)
	must(t, l.AddBytes("optim.state", dst))
	wantCode(t, l.AddBytes("optim.state", make([]byte, 10)), ErrRange)
	wantCode(t, l.AddBytes("t", make([]byte, 10)), ErrKind)
	must(t, l.Execute())
	if !bytes.Equal(dst, blob) {
		t.Fatal("blob loaded through a Load differs")
	}
	// Tensor calls on a blob and blob calls on a tensor.
	wantCode(t, ReadTensor(r, "optim.state", Box{Sizes: []uint64{3000}}, make([]uint8, 3000)), ErrKind)
	_, err = r.ReadBytes("t")
	wantCode(t, err, ErrKind)
}

func TestMetadata(t *testing.T) {
	dir := ckpt(t)
	s := newSave(t, dir, nil, nil)
	must(t, s.SetMetadata("step", "10"))
	must(t, s.SetMetadata("note", "π ≈ 3.14"))
	must(t, s.SetMetadata("step", "11")) // the last value wins
	must(t, s.Commit())
	wantCode(t, s.SetMetadata("late", "x"), ErrState)

	r := openReader(t, dir, nil)
	md, err := r.Metadata()
	must(t, err)
	if len(md) != 2 || md["step"] != "11" || md["note"] != "π ≈ 3.14" {
		t.Fatalf("metadata %v", md)
	}
	v, err := r.MetadataValue("note")
	must(t, err)
	if v != "π ≈ 3.14" {
		t.Fatalf("note = %q", v)
	}
	_, err = r.MetadataValue("missing")
	wantCode(t, err, ErrNotFound)
}

func TestBoxesSpanningChunks(t *testing.T) {
	dir := ckpt(t)
	shape := []uint64{10, 6}
	full := fill(60, func(i int) float64 { return float64(i) * 0.5 })
	s := newSave(t, dir, nil, &SaveOptions{AllowPartial: true}) // "partial" below, on purpose
	// Four row chunks offered by one rank.
	bounds := [][2]uint64{{0, 3}, {3, 5}, {5, 9}, {9, 10}}
	for _, b := range bounds {
		must(t, SaveTensor(s, "w", shape, Rows(shape, b[0], b[1]), full[b[0]*6:b[1]*6]))
	}
	// A tensor of which only rows 0..4 were saved.
	must(t, SaveTensor(s, "partial", shape, Rows(shape, 0, 5), full[:30]))
	must(t, s.Commit())

	r := openReader(t, dir, nil)
	e, err := r.Find("w")
	must(t, err)
	if e.ChunkCount != 4 || e.CoveredNumel != 60 {
		t.Fatalf("w: %+v", e)
	}
	chunks, err := r.Chunks(e.Index)
	must(t, err)
	var got [][2]uint64
	for _, c := range chunks {
		if c.Offsets[1] != 0 || c.Sizes[1] != 6 {
			t.Fatalf("chunk %+v", c)
		}
		got = append(got, [2]uint64{c.Offsets[0], c.Offsets[0] + c.Sizes[0]})
	}
	sort.Slice(got, func(i, j int) bool { return got[i][0] < got[j][0] })
	if !slices.Equal(got, bounds) {
		t.Fatalf("chunks %v, want %v", got, bounds)
	}
	// Rows 2..8, columns 1..5: spans three chunks.
	box := Box{Offsets: []uint64{2, 1}, Sizes: []uint64{6, 4}}
	dst := make([]float64, 24)
	must(t, ReadTensor(r, "w", box, dst))
	for i := 0; i < 6; i++ {
		for j := 0; j < 4; j++ {
			if want := full[(i+2)*6+j+1]; dst[i*4+j] != want {
				t.Fatalf("box[%d][%d] = %v, want %v", i, j, dst[i*4+j], want)
			}
		}
	}
	p, err := r.Find("partial")
	must(t, err)
	if p.CoveredNumel != 30 || p.Numel != 60 {
		t.Fatalf("partial: %+v", p)
	}
	must(t, ReadTensor(r, "partial", Rows(shape, 1, 5), make([]float64, 24)))
	wantCode(t, ReadTensor(r, "partial", Rows(shape, 3, 7), make([]float64, 24)), ErrUncovered)
}

func TestInspect(t *testing.T) {
	dir := ckpt(t)
	before := time.Now().Add(-time.Minute)
	s := newSave(t, dir, nil, nil)
	must(t, SaveTensor(s, "layers.1.b", []uint64{5}, Box{}, []float32{1, 2, 3, 4, 5}))
	must(t, SaveTensor(s, "layers.0.w", []uint64{2, 3}, Box{}, []int64{1, 2, 3, 4, 5, 6}))
	must(t, s.AddBytes("extra", []byte("hello")))
	must(t, s.Commit())

	r := openReader(t, dir, nil)
	entries, err := r.Entries()
	must(t, err)
	var names []string
	var stored uint64
	for i, e := range entries {
		names = append(names, e.FQN)
		if e.Index != i || e.StoredBytes != e.NBytes {
			t.Errorf("entry %d: %+v", i, e)
		}
		stored += e.StoredBytes
	}
	if !slices.Equal(names, []string{"extra", "layers.0.w", "layers.1.b"}) {
		t.Fatalf("entries %v", names)
	}
	w := entries[1]
	if w.Kind != KindTensor || w.DType != I64 || !slices.Equal(w.Shape, []uint64{2, 3}) || w.ChunkCount != 1 ||
		w.Numel != 6 || w.NBytes != 48 || w.CoveredNumel != 6 {
		t.Fatalf("layers.0.w: %+v", w)
	}
	info, err := r.StorageInfo()
	must(t, err)
	if info.CheckpointID != "ckpt" || info.SaveID == "" || info.LibraryVersion != VersionString() ||
		info.WorldSize != 1 || info.FormatMajor != FormatMajor || info.Alignment != 4096 ||
		info.FileCount < 1 || info.TotalStoredBytes != stored ||
		info.Created.Before(before) || info.Created.After(time.Now().Add(time.Minute)) {
		t.Fatalf("storage info %+v", info)
	}
	// Every chunk's CRC-32 is the zlib CRC of the bytes at its place in its file.
	for _, e := range entries {
		chunks, err := r.Chunks(e.Index)
		must(t, err)
		for _, c := range chunks {
			if c.Transform != TransformNone || c.StoredLength != c.RawLength || c.StoredLength != e.NBytes ||
				c.WriterRank != 0 || c.FileOffset%extentAlignment(c.StoredLength, 4096) != 0 || filepath.IsAbs(c.File) {
				t.Fatalf("%s: chunk %+v", e.FQN, c)
			}
			data, err := os.ReadFile(filepath.Join(dir, c.File))
			must(t, err)
			stored := data[c.FileOffset : c.FileOffset+c.StoredLength]
			if crc32.ChecksumIEEE(stored) != c.CRC32 {
				t.Fatalf("%s: CRC %08x, file bytes give %08x", e.FQN, c.CRC32, crc32.ChecksumIEEE(stored))
			}
		}
	}
	c, err := r.Chunk(w.Index, 0)
	must(t, err)
	if !slices.Equal(c.Offsets, []uint64{0, 0}) || !slices.Equal(c.Sizes, []uint64{2, 3}) {
		t.Fatalf("chunk %+v", c)
	}
	_, err = r.Chunk(w.Index, 1)
	wantCode(t, err, ErrRange)
	_, err = r.Entry(3)
	wantCode(t, err, ErrRange)
	must(t, r.Verify())
}

// corrupt flips one byte of the first stored extent of entry fqn.
func corrupt(t *testing.T, dir string, fqn string) {
	t.Helper()
	r := openReader(t, dir, nil)
	e, err := r.Find(fqn)
	must(t, err)
	c, err := r.Chunk(e.Index, 0)
	must(t, err)
	must(t, r.Close())
	path := filepath.Join(dir, c.File)
	data, err := os.ReadFile(path)
	must(t, err)
	data[c.FileOffset+5] ^= 0x40
	must(t, os.WriteFile(path, data, 0o644))
}

func TestChecksumErrors(t *testing.T) {
	dir := ckpt(t)
	vals := fill(16, func(i int) uint32 { return uint32(i * 1000) })
	s := newSave(t, dir, nil, nil)
	must(t, SaveTensor(s, "v", []uint64{16}, Box{}, vals))
	must(t, s.AddBytes("b", []byte("some bytes that will be damaged")))
	must(t, s.Commit())
	must(t, openReader(t, dir, nil).Verify())

	corrupt(t, dir, "v")
	r := openReader(t, dir, nil)
	wantCode(t, r.Verify(), ErrChecksum)
	wantCode(t, ReadTensor(r, "v", Whole([]uint64{16}), make([]uint32, 16)), ErrChecksum)
	// The blob is intact and still loads.
	_, err := r.ReadBytes("b")
	must(t, err)
	// Without verification the damaged value comes through: byte 5 is in element 1.
	nv := openReader(t, dir, &LoadOptions{NoVerify: true})
	got := make([]uint32, 16)
	must(t, ReadTensor(nv, "v", Whole([]uint64{16}), got))
	if got[1] != vals[1]^(0x40<<8) || got[0] != vals[0] || got[2] != vals[2] {
		t.Fatalf("NoVerify read %v", got[:3])
	}
	wantCode(t, nv.Verify(), ErrChecksum) // Verify ignores NoVerify

	corrupt(t, dir, "b")
	_, err = openReader(t, dir, nil).ReadBytes("b")
	wantCode(t, err, ErrChecksum)
}

func TestCompressionFsyncAlignment(t *testing.T) {
	zeros := make([]float32, 1<<14) // compresses well
	for i := range zeros {
		zeros[i] = float32(i % 4)
	}
	odd := fill(37, func(i int) int8 { return int8(i) })

	for _, tc := range []struct {
		name string
		opts SaveOptions
	}{
		{"raw", SaveOptions{}},
		{"deflate", SaveOptions{CompressionLevel: 6}},
		{"zstd-shuffled", SaveOptions{Codec: CodecZstd, Shuffle: true}},
		{"zlib-blocks", SaveOptions{Codec: CodecZlib, CompressionLevel: 9}},
		{"fsync-aligned", SaveOptions{Fsync: true, Alignment: 512, IOThreads: 2, CheckpointID: "run-7"}},
		{"no-fsync", SaveOptions{NoFsync: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := ckpt(t)
			s := newSave(t, dir, nil, &tc.opts)
			must(t, SaveTensor(s, "z", []uint64{1 << 14}, Box{}, zeros))
			must(t, SaveTensor(s, "odd1", []uint64{37}, Box{}, odd))
			must(t, SaveTensor(s, "odd2", []uint64{37}, Box{}, odd))
			must(t, s.Commit())
			r := openReader(t, dir, nil)
			must(t, r.Verify())
			equal(t, "z", readAll[float32](t, r, "z"), zeros)
			equal(t, "odd2", readAll[int8](t, r, "odd2"), odd)
			z, err := r.Find("z")
			must(t, err)
			c, err := r.Chunk(z.Index, 0)
			must(t, err)
			info, err := r.StorageInfo()
			must(t, err)
			switch tc.name {
			case "raw":
				if c.Transform != TransformNone || z.StoredBytes != z.NBytes {
					t.Fatalf("raw: %+v %+v", c, z)
				}
			case "deflate":
				if c.Transform != TransformDeflate || c.StoredLength >= c.RawLength || z.StoredBytes >= z.NBytes/4 ||
					c.RawLength != z.NBytes {
					t.Fatalf("deflate: %+v %+v", c, z)
				}
			case "zstd-shuffled", "zlib-blocks":
				want, width := TransformZstdBlocks, uint32(4)
				if tc.name == "zlib-blocks" {
					want, width = TransformZlibBlocks, 0
				}
				if c.Transform != want || c.ShuffleWidth != width || c.StoredLength >= c.RawLength/4 || info.FormatMajor != 2 {
					t.Fatalf("%s: %+v %+v", tc.name, c, info)
				}
				part := make([]float32, 100)
				must(t, ReadTensor(r, "z", Box{Offsets: []uint64{9000}, Sizes: []uint64{100}}, part))
				equal(t, "z[9000:9100]", part, zeros[9000:9100])
			case "fsync-aligned":
				if info.Alignment != 512 || info.CheckpointID != "run-7" {
					t.Fatalf("info %+v", info)
				}
				entries, err := r.Entries()
				must(t, err)
				for _, e := range entries {
					c, err := r.Chunk(e.Index, 0)
					must(t, err)
					if c.FileOffset%extentAlignment(c.StoredLength, 512) != 0 {
						t.Fatalf("%s at offset %d", e.FQN, c.FileOffset)
					}
				}
			}
		})
	}
}

func TestOverwrite(t *testing.T) {
	dir := ckpt(t)
	save := func(v int32, opts *SaveOptions) error {
		s, err := NewSave(dir, nil, opts)
		if err != nil {
			return err
		}
		defer s.Close()
		if err := SaveTensor(s, "v", []uint64{3}, Box{}, []int32{v, v, v}); err != nil {
			return err
		}
		return s.Commit()
	}
	must(t, save(1, nil))
	wantCode(t, save(2, nil), ErrExists)
	r := openReader(t, dir, nil)
	equal(t, "after refused save", readAll[int32](t, r, "v"), []int32{1, 1, 1})
	must(t, r.Close())
	must(t, save(3, &SaveOptions{Overwrite: true}))
	equal(t, "after overwrite", readAll[int32](t, openReader(t, dir, nil), "v"), []int32{3, 3, 3})
}

func TestErrors(t *testing.T) {
	_, err := OpenReader(filepath.Join(t.TempDir(), "nothing-here"), nil)
	wantCode(t, err, ErrNotFound)

	dir := ckpt(t)
	s := newSave(t, dir, nil, &SaveOptions{AllowPartial: true}) // "g" is half saved
	must(t, SaveTensor(s, "f", []uint64{2, 2}, Box{}, []float32{1, 2, 3, 4}))
	must(t, SaveTensor(s, "g", []uint64{4, 2}, Rows([]uint64{4, 2}, 0, 2), []float32{1, 2, 3, 4}))
	// Overlapping chunk of the same tensor from the same rank.
	wantCode(t, SaveTensor(s, "g", []uint64{4, 2}, Rows([]uint64{4, 2}, 1, 3), []float32{1, 2, 3, 4}), ErrConflict)
	// Chunk outside the global shape.
	wantCode(t, SaveTensor(s, "h", []uint64{2}, Box{Offsets: []uint64{1}, Sizes: []uint64{2}}, []float32{1, 2}), ErrShape)
	wantCode(t, s.AddTensorRaw("bad-dtype", DType(77), []uint64{1}, Box{}, []byte{0}, View{}), ErrInvalid)
	must(t, s.Commit())
	wantCode(t, s.Commit(), ErrState)
	wantCode(t, SaveTensor(s, "late", []uint64{1}, Box{}, []float32{1}), ErrState)
	must(t, s.Close())
	wantCode(t, s.AddBytes("closed", []byte{1}), ErrState)

	r := openReader(t, dir, nil)
	whole := Whole([]uint64{2, 2})
	err = ReadTensor(r, "f", whole, make([]float64, 4))
	wantCode(t, err, ErrDType)
	if errors.Is(err, ErrShape) || !errors.Is(err, &Error{Code: ErrDType}) {
		t.Fatal("errors.Is matches the wrong codes")
	}
	wantCode(t, ReadTensor(r, "missing", whole, make([]float32, 4)), ErrNotFound)
	_, err = r.Find("missing")
	wantCode(t, err, ErrNotFound)
	wantCode(t, ReadTensor(r, "f", Box{Sizes: []uint64{4}}, make([]float32, 4)), ErrShape)
	wantCode(t, ReadTensor(r, "f", Box{Offsets: []uint64{1, 0}, Sizes: []uint64{2, 2}}, make([]float32, 4)), ErrShape)

	l, err := r.NewLoad(nil)
	must(t, err)
	wantCode(t, LoadTensor(l, "f", whole, make([]int32, 4)), ErrDType)
	wantCode(t, LoadTensor(l, "nope", whole, make([]float32, 4)), ErrNotFound)
	// The reader cannot be closed under an open load.
	wantCode(t, r.Close(), ErrState)
	dst := make([]float32, 4)
	must(t, LoadTensor(l, "f", whole, dst))
	must(t, l.Execute())
	wantCode(t, l.Execute(), ErrState)
	equal(t, "f", dst, []float32{1, 2, 3, 4})
	must(t, l.Close())
	must(t, r.Close())
	_, err = r.Entries()
	wantCode(t, err, ErrState)
}

func TestAllowPartial(t *testing.T) {
	dir := ckpt(t)
	s := newSave(t, dir, nil, nil)
	must(t, SaveTensor(s, "present", []uint64{2}, Box{}, []uint8{5, 6}))
	must(t, s.Commit())
	r := openReader(t, dir, &LoadOptions{AllowPartial: true})
	l, err := r.NewLoad(nil)
	must(t, err)
	defer l.Close()
	a, b := make([]uint8, 2), []uint8{9, 9}
	must(t, LoadTensor(l, "present", Whole([]uint64{2}), a))
	must(t, LoadTensor(l, "absent", Whole([]uint64{2}), b))
	must(t, l.AddBytes("absent-blob", make([]byte, 4)))
	must(t, l.Execute())
	n, err := l.Skipped()
	must(t, err)
	if n != 2 {
		t.Fatalf("skipped %d, want 2", n)
	}
	equal(t, "present", a, []uint8{5, 6})
	equal(t, "absent untouched", b, []uint8{9, 9})
}

func TestSingleCommAndCloseOrder(t *testing.T) {
	comm, err := NewSingleComm()
	must(t, err)
	if comm.Rank() != 0 || comm.Size() != 1 {
		t.Fatalf("single comm rank %d size %d", comm.Rank(), comm.Size())
	}
	dir := ckpt(t)
	s, err := NewSave(dir, comm, nil)
	must(t, err)
	must(t, SaveTensor(s, "x", []uint64{1}, Box{}, []float64{2.5}))
	wantCode(t, comm.Close(), ErrState) // still used by s
	must(t, s.Commit())
	must(t, s.Close())
	must(t, s.Close()) // twice is fine
	r := openReader(t, dir, nil)
	l, err := r.NewLoad(comm)
	must(t, err)
	got := []float64{0}
	must(t, LoadTensor(l, "x", Whole([]uint64{1}), got))
	must(t, l.Execute())
	must(t, l.Close())
	must(t, comm.Close())
	if got[0] != 2.5 {
		t.Fatalf("x = %v", got[0])
	}
	_, err = NewSave(dir, comm, nil)
	wantCode(t, err, ErrState)
}

// Handles dropped without Close are released by their finalizers; a Save or Load that still
// held pinned memory must unpin it, or the runtime aborts with a leaked-pin error.
func TestFinalizersReleaseDroppedHandles(t *testing.T) {
	dir := ckpt(t)
	func() {
		s, err := NewSave(dir, nil, nil)
		must(t, err)
		must(t, SaveTensor(s, "x", []uint64{1024}, Box{}, make([]float32, 1024)))
		must(t, s.AddBytes("b", make([]byte, 100)))
	}()
	s, err := NewSave(dir, nil, nil)
	must(t, err)
	must(t, SaveTensor(s, "x", []uint64{4}, Box{}, []float32{1, 2, 3, 4}))
	must(t, s.Commit())
	must(t, s.Close())
	func() {
		r, err := OpenReader(dir, nil)
		must(t, err)
		l, err := r.NewLoad(nil)
		must(t, err)
		must(t, LoadTensor(l, "x", Whole([]uint64{4}), make([]float32, 4)))
	}()
	for i := 0; i < 5; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// The alignment FORMAT.md section 4 promises an extent of length n: the save's alignment, or
// min(alignment, 64) for a packed extent shorter than it.
func extentAlignment(n, alignment uint64) uint64 {
	if n >= alignment {
		return alignment
	}
	return min(alignment, 64)
}

// AddTensors offers a batch in one library call: whole tensors, a row box and a transposed view
// round-trip; a refused chunk keeps none of its batch and the error names its position.
func TestAddTensorsBatch(t *testing.T) {
	dir := ckpt(t)
	s := newSave(t, dir, nil, &SaveOptions{AllowPartial: true})
	var batch []TensorChunk
	values := make([][]int32, 100)
	for i := range values {
		values[i] = fill(6, func(k int) int32 { return int32(i*10 + k) })
		batch = append(batch, TensorChunk{FQN: fmt.Sprintf("w.%d", i), DType: I32, Shape: []uint64{2, 3}, Data: AsBytes(values[i])})
	}
	// t (2x3) given as the transpose of a 3x2 buffer: element (r, c) at c*2 + r.
	transposed := []float32{0, 3, 1, 4, 2, 5}
	batch = append(batch, TensorChunk{FQN: "t", DType: F32, Shape: []uint64{2, 3}, Data: AsBytes(transposed),
		View: View{Strides: []int64{1, 2}}})
	bottom := []int8{7, 8, 9}
	batch = append(batch, TensorChunk{FQN: "rows", DType: I8, Shape: []uint64{2, 3}, Box: Rows([]uint64{2, 3}, 1, 2), Data: AsBytes(bottom)})

	dup := []TensorChunk{batch[0], batch[1], batch[0]}
	err := s.AddTensors(dup)
	wantCode(t, err, ErrConflict)
	if !strings.Contains(err.Error(), "item 2 of the batch") {
		t.Fatalf("error %q does not name the refused item", err)
	}
	must(t, s.AddTensors(batch)) // nothing of the refused batch was kept
	must(t, s.Commit())

	r := openReader(t, dir, nil)
	for i := range values {
		equal(t, fmt.Sprintf("w.%d", i), readAll[int32](t, r, fmt.Sprintf("w.%d", i)), values[i])
	}
	equal(t, "t", readAll[float32](t, r, "t"), []float32{0, 1, 2, 3, 4, 5})
	got := make([]int8, 3)
	must(t, ReadTensor(r, "rows", Rows([]uint64{2, 3}, 1, 2), got))
	equal(t, "rows", got, bottom)
}
