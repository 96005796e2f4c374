// Command golden writes and checks the cross-language golden model (tests/golden/README.md):
//
//	golden write DIR WORLD   # saves the model into DIR with WORLD ranks (goroutines + LocalGroup)
//	golden read DIR          # checks DIR; exit status 0 only if everything matches
//
// The model is read from $SHARDPOINT_GOLDEN_MODEL, else from tests/golden/model.txt found by
// walking up from the working directory, the executable and this source file.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	sp "shardpoint.dev/shardpoint/bindings/go/shardpoint"
)

// record is one line of model.txt.
type record struct {
	kind     string // "tensor", "bytes" or "meta"
	fqn      string // tensors and bytes
	dtype    sp.DType
	shape    []uint64 // nil for a 0-d tensor
	length   uint64   // bytes entries
	sharding string
	seed     uint64
	key      string // meta
	value    string
}

func main() {
	if len(os.Args) < 3 || (os.Args[1] == "write" && len(os.Args) != 4) || (os.Args[1] == "read" && len(os.Args) != 3) {
		fmt.Fprintln(os.Stderr, "usage: golden write DIR WORLD | golden read DIR")
		os.Exit(2)
	}
	model, err := loadModel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "golden:", err)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "write":
		world, err := strconv.Atoi(os.Args[3])
		if err != nil || world < 1 {
			fmt.Fprintln(os.Stderr, "golden: WORLD must be a positive integer")
			os.Exit(2)
		}
		if !write(os.Args[2], world, model) {
			os.Exit(1)
		}
	case "read":
		if n := read(os.Args[2], model); n > 0 {
			fmt.Printf("golden read: %d failures\n", n)
			os.Exit(1)
		}
		fmt.Println("golden read: ok")
	default:
		fmt.Fprintln(os.Stderr, "usage: golden write DIR WORLD | golden read DIR")
		os.Exit(2)
	}
}

func modelPath() (string, error) {
	if p := os.Getenv("SHARDPOINT_GOLDEN_MODEL"); p != "" {
		return p, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	if _, src, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(src))
	}
	for _, dir := range starts {
		for {
			p := filepath.Join(dir, "tests", "golden", "model.txt")
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("tests/golden/model.txt not found; set SHARDPOINT_GOLDEN_MODEL")
}

func loadModel() ([]record, error) {
	path, err := modelPath()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var model []record
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		rec, err := parseRecord(fields)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, line, err)
		}
		model = append(model, rec)
	}
	return model, sc.Err()
}

func parseRecord(f []string) (record, error) {
	switch {
	case f[0] == "tensor" && len(f) == 6:
		dt, err := sp.ParseDType(f[2])
		if err != nil {
			return record{}, err
		}
		var shape []uint64
		if f[3] != "-" {
			for _, s := range strings.Split(f[3], ",") {
				n, err := strconv.ParseUint(s, 10, 64)
				if err != nil {
					return record{}, err
				}
				shape = append(shape, n)
			}
		}
		seed, err := strconv.ParseUint(f[5], 10, 64)
		return record{kind: "tensor", fqn: f[1], dtype: dt, shape: shape, sharding: f[4], seed: seed}, err
	case f[0] == "bytes" && len(f) == 5:
		n, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return record{}, err
		}
		seed, err := strconv.ParseUint(f[4], 10, 64)
		return record{kind: "bytes", fqn: f[1], length: n, sharding: f[3], seed: seed}, err
	case f[0] == "meta" && len(f) == 3:
		return record{kind: "meta", key: f[1], value: f[2]}, nil
	}
	return record{}, fmt.Errorf("cannot parse %q", strings.Join(f, " "))
}

// gen is the generator rule: the byte image of a whole entry.
func gen(n, seed uint64, isBool bool) []byte {
	out := make([]byte, n)
	for k := uint64(0); k < n; k++ {
		b := byte((k*131 + seed*17 + (k >> 11)) % 256)
		if isBool {
			b %= 2
		}
		out[k] = b
	}
	return out
}

func numel(shape []uint64) uint64 {
	n := uint64(1)
	for _, s := range shape {
		n *= s
	}
	return n
}

func image(rec record) []byte {
	if rec.kind == "bytes" {
		return gen(rec.length, rec.seed, false)
	}
	return gen(numel(rec.shape)*uint64(rec.dtype.Size()), rec.seed, rec.dtype == sp.Bool)
}

// part is [floor(r*n/W), floor((r+1)*n/W)).
func part(n uint64, r, w int) (uint64, uint64) {
	return uint64(r) * n / uint64(w), uint64(r+1) * n / uint64(w)
}

// chunkOf returns the box rank r offers of a tensor and where its elements sit in the whole
// tensor's image (which each rank holds), or ok == false when the rank offers nothing.
func chunkOf(rec record, r, w int) (box sp.Box, view sp.View, ok bool, err error) {
	switch rec.sharding {
	case "replicated":
		return sp.Box{}, sp.View{}, true, nil
	case "rank0":
		return sp.Box{}, sp.View{}, r == 0, nil
	case "rows", "cols":
		dim := 0
		if rec.sharding == "cols" {
			dim = 1
		}
		if len(rec.shape) <= dim {
			return box, view, false, fmt.Errorf("%s: %s sharding needs %d dimensions", rec.fqn, rec.sharding, dim+1)
		}
		lo, hi := part(rec.shape[dim], r, w)
		if lo == hi {
			return box, view, false, nil
		}
		box = sp.Whole(rec.shape)
		box.Offsets[dim], box.Sizes[dim] = lo, hi-lo
		strides := sp.COrder(rec.shape)
		// The chunk is a strided view into the whole image: its first element is at offset lo
		// along dim, the strides are the whole tensor's.
		return box, sp.View{Start: int(lo) * int(strides[dim]), Strides: strides}, true, nil
	}
	return box, view, false, fmt.Errorf("%s: unknown sharding %q", rec.fqn, rec.sharding)
}

func write(dir string, world int, model []record) bool {
	g := sp.NewLocalGroup(world)
	errs := g.RunEach(func(comm *sp.Comm) error { return writeRank(dir, comm, model) })
	ok := true
	for r, err := range errs {
		if err != nil {
			fmt.Printf("rank %d: %v\n", r, err)
			ok = false
		}
	}
	return ok
}

func writeRank(dir string, comm *sp.Comm, model []record) error {
	s, err := sp.NewSave(dir, comm, &sp.SaveOptions{Overwrite: true})
	if err != nil {
		return err
	}
	defer s.Close()
	r, w := comm.Rank(), comm.Size()
	for _, rec := range model {
		switch rec.kind {
		case "tensor":
			box, view, offer, err := chunkOf(rec, r, w)
			if err != nil {
				return err
			}
			if offer {
				if err := s.AddTensorRaw(rec.fqn, rec.dtype, rec.shape, box, image(rec), view); err != nil {
					return fmt.Errorf("%s: %w", rec.fqn, err)
				}
			}
		case "bytes":
			switch rec.sharding {
			case "rank0", "replicated":
			default:
				return fmt.Errorf("%s: sharding %q does not apply to bytes", rec.fqn, rec.sharding)
			}
			if rec.sharding == "replicated" || r == 0 {
				if err := s.AddBytes(rec.fqn, image(rec)); err != nil {
					return fmt.Errorf("%s: %w", rec.fqn, err)
				}
			}
		case "meta":
			if err := s.SetMetadata(rec.key, rec.value); err != nil {
				return err
			}
		}
	}
	return s.Commit()
}

// read checks dir against the model and returns the number of failures (one line printed each).
func read(dir string, model []record) int {
	fails := 0
	fail := func(format string, args ...any) {
		fmt.Printf("FAIL "+format+"\n", args...)
		fails++
	}
	r, err := sp.OpenReader(dir, nil)
	if err != nil {
		fail("open %s: %v", dir, err)
		return fails
	}
	defer r.Close()
	entries, err := r.Entries()
	if err != nil {
		fail("entries: %v", err)
		return fails
	}
	byName := map[string]sp.EntryInfo{}
	for _, e := range entries {
		byName[e.FQN] = e
	}
	want := map[string]bool{}
	for _, rec := range model {
		switch rec.kind {
		case "tensor":
			want[rec.fqn] = true
			checkTensor(r, rec, byName, fail)
		case "bytes":
			want[rec.fqn] = true
			checkBytes(r, rec, byName, fail)
		case "meta":
			v, err := r.MetadataValue(rec.key)
			if err != nil {
				fail("meta %s: %v", rec.key, err)
			} else if v != rec.value {
				fail("meta %s: %q, want %q", rec.key, v, rec.value)
			}
		}
	}
	for _, e := range entries {
		if !want[e.FQN] {
			fail("%s: entry not in the model", e.FQN)
		}
	}
	return fails
}

func checkTensor(r *sp.Reader, rec record, byName map[string]sp.EntryInfo, fail func(string, ...any)) {
	e, found := byName[rec.fqn]
	switch {
	case !found:
		fail("%s: missing", rec.fqn)
		return
	case e.Kind != sp.KindTensor:
		fail("%s: kind %s, want tensor", rec.fqn, e.Kind)
		return
	case e.DType != rec.dtype:
		fail("%s: dtype %s, want %s", rec.fqn, e.DType, rec.dtype)
		return
	case !slices.Equal(e.Shape, rec.shape):
		fail("%s: shape %v, want %v", rec.fqn, e.Shape, rec.shape)
		return
	}
	img := image(rec)
	whole := make([]byte, len(img))
	if err := r.ReadTensorRaw(rec.fqn, rec.dtype, sp.Whole(rec.shape), whole, sp.View{}); err != nil {
		fail("%s: load whole: %v", rec.fqn, err)
	} else if !bytes.Equal(whole, img) {
		fail("%s: whole tensor differs from the generator", rec.fqn)
	}
	if len(rec.shape) == 0 || rec.shape[0] < 2 {
		return
	}
	lo := rec.shape[0] / 3
	rowBytes := uint64(len(img)) / rec.shape[0]
	box := sp.Rows(rec.shape, lo, rec.shape[0])
	got := make([]byte, (rec.shape[0]-lo)*rowBytes)
	if err := r.ReadTensorRaw(rec.fqn, rec.dtype, box, got, sp.View{}); err != nil {
		fail("%s: load rows %d..%d: %v", rec.fqn, lo, rec.shape[0], err)
	} else if !bytes.Equal(got, img[lo*rowBytes:]) {
		fail("%s: rows %d..%d differ from the generator", rec.fqn, lo, rec.shape[0])
	}
}

func checkBytes(r *sp.Reader, rec record, byName map[string]sp.EntryInfo, fail func(string, ...any)) {
	e, found := byName[rec.fqn]
	switch {
	case !found:
		fail("%s: missing", rec.fqn)
		return
	case e.Kind != sp.KindBytes:
		fail("%s: kind %s, want bytes", rec.fqn, e.Kind)
		return
	case e.NBytes != rec.length:
		fail("%s: length %d, want %d", rec.fqn, e.NBytes, rec.length)
		return
	}
	got, err := r.ReadBytes(rec.fqn)
	if err != nil {
		fail("%s: read: %v", rec.fqn, err)
	} else if !bytes.Equal(got, image(rec)) {
		fail("%s: bytes differ from the generator", rec.fqn)
	}
}
