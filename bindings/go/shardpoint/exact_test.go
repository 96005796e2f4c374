package shardpoint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A 6x8 f32 tensor "w" and a blob, saved once per test.
func savedW(t *testing.T) (*Reader, []float32) {
	t.Helper()
	dir := ckpt(t)
	w := fill(48, func(i int) float32 { return float32(i) })
	s := newSave(t, dir, nil, nil)
	must(t, SaveTensor(s, "w", []uint64{6, 8}, Box{}, w))
	must(t, s.AddBytes("blob", []byte("abc")))
	must(t, s.Commit())
	return openReader(t, dir, nil), w
}

func wantMessage(t *testing.T, err error, code Code, message string) {
	t.Helper()
	wantCode(t, err, code)
	var e *Error
	errors.As(err, &e)
	if e.Message != message {
		t.Fatalf("message %q, want %q", e.Message, message)
	}
}

func TestWholeOfAnotherShapeIsAShapeError(t *testing.T) {
	r, _ := savedW(t)
	for name, shape := range map[string][]uint64{
		"too small":  {6, 7},
		"too large":  {6, 9},
		"more rows":  {7, 8},
		"transposed": {8, 6},
		"flat":       {48},
		"extra dim":  {6, 8, 1},
	} {
		t.Run(name, func(t *testing.T) {
			n := 1
			for _, s := range shape {
				n *= int(s)
			}
			dst := fill(n, func(int) float32 { return -1 })
			want := fmt.Sprintf("destination has shape %v but \"w\" is [6 8]", shape)
			wantMessage(t, ReadTensor(r, "w", Whole(shape), dst), ErrShape, want)
			wantMessage(t, r.ReadTensorRaw("w", F32, Whole(shape), AsBytes(dst), View{}), ErrShape, want)
			l, err := r.NewLoad(nil)
			must(t, err)
			defer l.Close()
			wantMessage(t, LoadTensor(l, "w", Whole(shape), dst), ErrShape, want)
			wantCode(t, LoadTensorView(l, "w", Whole(shape), dst, Strided(0, 1, 6)), ErrShape)
			for i, v := range dst {
				if v != -1 {
					t.Fatalf("element %d was written", i)
				}
			}
		})
	}
	// Rows made for another shape: the other dimensions would be read in part.
	wantMessage(t, ReadTensor(r, "w", Rows([]uint64{6, 7}, 0, 2), make([]float32, 14)), ErrShape,
		"the box [0 0]+[2 7] was made for shape [6 7] but \"w\" is [6 8]")
}

func TestDestinationMustHoldTheBoxExactly(t *testing.T) {
	r, w := savedW(t)
	whole := Whole([]uint64{6, 8})
	wantMessage(t, ReadTensor(r, "w", whole, make([]float32, 49)), ErrShape,
		"destination holds 49 elements but the box [0 0]+[6 8] of \"w\" has 48")
	wantCode(t, ReadTensor(r, "w", whole, make([]float32, 47)), ErrShape)
	box := Box{Offsets: []uint64{1, 2}, Sizes: []uint64{2, 3}}
	wantCode(t, ReadTensor(r, "w", box, make([]float32, 7)), ErrShape)
	wantCode(t, r.ReadTensorRaw("w", F32, box, make([]byte, 4*7), View{}), ErrShape)
	l, err := r.NewLoad(nil)
	must(t, err)
	defer l.Close()
	wantCode(t, LoadTensor(l, "w", box, make([]float32, 5)), ErrShape)
	wantCode(t, l.AddTensorRaw("w", F32, whole, make([]byte, 4*50), View{}), ErrShape)
	// The exact size loads.
	got := make([]float32, 48)
	must(t, ReadTensor(r, "w", whole, got))
	equal(t, "w", got, w)
}

func TestWrongDestinationDType(t *testing.T) {
	r, _ := savedW(t)
	whole := Whole([]uint64{6, 8})
	wantCode(t, ReadTensor(r, "w", whole, make([]float64, 48)), ErrDType)
	wantCode(t, ReadTensor(r, "w", whole, make([]int32, 48)), ErrDType)
	wantCode(t, ReadTensor(r, "w", whole, make([]uint32, 48)), ErrDType)
	wantCode(t, r.ReadTensorRaw("w", F16, whole, make([]byte, 96), View{}), ErrDType)
	l, err := r.NewLoad(nil)
	must(t, err)
	defer l.Close()
	wantCode(t, LoadTensor(l, "w", whole, make([]int32, 48)), ErrDType)
}

func TestExplicitBoxesStillLoadParts(t *testing.T) {
	r, w := savedW(t)
	// Columns 1..7 of every row: asked for explicitly.
	cols := make([]float32, 42)
	must(t, ReadTensor(r, "w", Box{Offsets: []uint64{0, 1}, Sizes: []uint64{6, 7}}, cols))
	for i := 0; i < 6; i++ {
		equal(t, "row", cols[i*7:(i+1)*7], w[i*8+1:(i+1)*8])
	}
	// Rows of the right shape, and a box placed inside a larger buffer by an explicit View.
	rows := make([]float32, 16)
	must(t, ReadTensor(r, "w", Rows([]uint64{6, 8}, 2, 4), rows))
	equal(t, "rows", rows, w[16:32])
	big := fill(100, func(int) float32 { return -1 })
	l, err := r.NewLoad(nil)
	must(t, err)
	defer l.Close()
	must(t, LoadTensorView(l, "w", Box{Offsets: []uint64{3, 4}, Sizes: []uint64{2, 3}}, big, View{Start: 11, Strides: []int64{10, 1}}))
	must(t, l.Execute())
	equal(t, "box row 0", big[11:14], w[28:31])
	equal(t, "box row 1", big[21:24], w[36:39])
	if big[10] != -1 || big[14] != -1 {
		t.Fatal("outside the box was written")
	}
}

func TestMissingAndBytesEntriesKeepTheirErrors(t *testing.T) {
	r, _ := savedW(t)
	wantCode(t, ReadTensor(r, "nope", Whole([]uint64{6, 7}), make([]float32, 42)), ErrNotFound)
	wantCode(t, ReadTensor(r, "blob", Whole([]uint64{3}), make([]uint8, 3)), ErrKind)
}

func TestSaveWithRowsOfAnotherShape(t *testing.T) {
	s := newSave(t, ckpt(t), nil, nil)
	wantCode(t, SaveTensor(s, "w", []uint64{6, 8}, Rows([]uint64{6, 7}, 0, 2), make([]float32, 14)), ErrShape)
}

func TestNewErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		code  Code
		value int
		name  string
	}{
		{ErrNoSpace, -20, "SHARDPOINT_ENOSPC"},
		{ErrNotDurable, -21, "SHARDPOINT_ENOTDURABLE"},
		{ErrUncovered, -16, "SHARDPOINT_EUNCOVERED"},
	} {
		if int(tc.code) != tc.value || tc.code.Name() != tc.name || tc.code.Error() != tc.name {
			t.Fatalf("%d: value %d name %q", tc.value, int(tc.code), tc.code.Name())
		}
		wrapped := fmt.Errorf("saving: %w", &Error{Code: tc.code, Name: tc.code.Name(), Message: "m"})
		if !errors.Is(wrapped, tc.code) {
			t.Fatalf("errors.Is(%v, %s)", wrapped, tc.name)
		}
	}
	full := fmt.Errorf("saving: %w", &Error{Code: ErrNoSpace, Name: ErrNoSpace.Name()})
	if !errors.Is(full, syscall.ENOSPC) || !errors.Is(ErrNoSpace, syscall.ENOSPC) {
		t.Fatal("ErrNoSpace does not match syscall.ENOSPC")
	}
	if errors.Is(&Error{Code: ErrIO}, syscall.ENOSPC) || errors.Is(full, ErrIO) || errors.Is(full, ErrNotDurable) {
		t.Fatal("errors.Is matches the wrong codes")
	}
}

// Real failures match the standard library's sentinels: a missing checkpoint fs.ErrNotExist, an
// existing one fs.ErrExist, and nothing else matches them.
func TestErrorsMatchFsSentinels(t *testing.T) {
	dir := t.TempDir()
	_, err := OpenReader(filepath.Join(dir, "missing"), nil)
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, ErrNotFound) || errors.Is(err, fs.ErrExist) {
		t.Fatalf("a missing checkpoint: %v", err)
	}
	ckpt := filepath.Join(dir, "ckpt")
	for i := 0; i < 2; i++ {
		s, err := NewSave(ckpt, nil, nil)
		must(t, err)
		must(t, SaveTensor(s, "w", []uint64{2}, Box{}, []float32{1, 2}))
		err = s.Commit()
		s.Close()
		if i == 0 {
			must(t, err)
		} else if !errors.Is(err, fs.ErrExist) || !errors.Is(err, ErrExists) || errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("saving over a checkpoint: %v", err)
		}
	}
	if errors.Is(&Error{Code: ErrChecksum}, fs.ErrNotExist) || errors.Is(ErrIO, fs.ErrExist) {
		t.Fatal("other codes match the fs sentinels")
	}
}

func TestSaveFlags(t *testing.T) {
	for _, tc := range []struct {
		opts *SaveOptions
		want uint32
	}{
		{nil, 0},
		{&SaveOptions{}, 0},
		{&SaveOptions{Fsync: true}, 0}, // deprecated: durability is the default; never FSYNC|NO_FSYNC
		{&SaveOptions{Fsync: true, NoFsync: true}, 0x4},
		{&SaveOptions{NoFsync: true}, 0x4},
		{&SaveOptions{AllowPartial: true}, 0x8},
		{&SaveOptions{Overwrite: true, NoFsync: true, AllowPartial: true}, 0x1 | 0x4 | 0x8},
	} {
		if got := saveFlags(tc.opts); got != tc.want {
			t.Fatalf("saveFlags(%+v) = %#x, want %#x", tc.opts, got, tc.want)
		}
	}
	// The deprecated option still saves.
	dir := ckpt(t)
	s := newSave(t, dir, nil, &SaveOptions{Fsync: true, NoFsync: true})
	must(t, SaveTensor(s, "x", []uint64{2}, Box{}, []int8{1, 2}))
	must(t, s.Commit())
}

func TestUncoveredSaveFailsAndLeavesNothing(t *testing.T) {
	dir := ckpt(t)
	s := newSave(t, dir, nil, nil)
	must(t, SaveTensor(s, "t", []uint64{4, 3}, Rows([]uint64{4, 3}, 0, 3), make([]int32, 9)))
	must(t, SaveTensor(s, "full", []uint64{2}, Box{}, []int32{1, 2}))
	err := s.Commit()
	wantCode(t, err, ErrUncovered)
	if !strings.Contains(err.Error(), "t") {
		t.Fatalf("%v does not name the tensor", err)
	}
	_, err = OpenReader(dir, nil)
	wantCode(t, err, ErrNotFound)
	if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) > 0 {
		for _, n := range names {
			if filepath.Base(n) != "shardpoint.lock" {
				t.Fatalf("the failed save left %v", names)
			}
		}
	}
	// With AllowPartial the same save commits.
	s2 := newSave(t, dir, nil, &SaveOptions{AllowPartial: true})
	must(t, SaveTensor(s2, "t", []uint64{4, 3}, Rows([]uint64{4, 3}, 0, 3), make([]int32, 9)))
	must(t, s2.Commit())
	r := openReader(t, dir, nil)
	e, err := r.Find("t")
	must(t, err)
	if e.CoveredNumel != 9 || e.Numel != 12 {
		t.Fatalf("%+v", e)
	}
}

// TestSaveHelperProcess is not a test: TestDurableByDefault runs the test binary under strace
// with SHARDPOINT_GO_SAVE_HELPER=dir,opts to count the fsyncs of one save.
func TestSaveHelperProcess(t *testing.T) {
	arg := os.Getenv("SHARDPOINT_GO_SAVE_HELPER")
	if arg == "" {
		t.Skip("helper process only")
	}
	dir, mode, _ := strings.Cut(arg, ",")
	opts := &SaveOptions{NoFsync: mode == "nofsync", Fsync: mode == "fsync"}
	s := newSave(t, dir, nil, opts)
	must(t, SaveTensor(s, "x", []uint64{1000}, Box{}, make([]float64, 1000)))
	must(t, s.Commit())
}

func TestDurableByDefault(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("needs strace")
	}
	fsyncs := func(mode string) int {
		dir := filepath.Join(t.TempDir(), mode)
		trace := dir + ".trace"
		cmd := exec.Command("strace", "-f", "-qq", "-e", "trace=fsync,fdatasync", "-e", "signal=none", "-o", trace,
			os.Args[0], "-test.run=^TestSaveHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SHARDPOINT_GO_SAVE_HELPER="+dir+","+mode)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", mode, err, out)
		}
		openReader(t, dir, nil)
		text, err := os.ReadFile(trace)
		must(t, err)
		return strings.Count(string(text), "fsync(") + strings.Count(string(text), "fdatasync(")
	}
	if n := fsyncs("default"); n < 3 {
		t.Fatalf("a default save made %d fsync calls, want at least 3 (data, metadata, directory)", n)
	}
	if n := fsyncs("fsync"); n < 3 {
		t.Fatalf("a save with the deprecated Fsync made %d fsync calls", n)
	}
	if n := fsyncs("nofsync"); n != 0 {
		t.Fatalf("a NoFsync save made %d fsync calls, want 0", n)
	}
}
