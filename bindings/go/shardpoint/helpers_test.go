package shardpoint

import (
	"errors"
	"path/filepath"
	"testing"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantCode fails unless err is a shardpoint *Error with the given code.
func wantCode(t *testing.T, err error, code Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code.Name())
	}
	if !errors.Is(err, code) {
		t.Fatalf("got %v, want %s", err, code.Name())
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%v is not a *shardpoint.Error", err)
	}
	if e.Name != code.Name() || e.Message == "" {
		t.Fatalf("error %#v: want name %s and a message", e, code.Name())
	}
}

// ckpt returns a fresh checkpoint path in a test temp dir.
func ckpt(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "ckpt")
}

func newSave(t *testing.T, dir string, comm *Comm, opts *SaveOptions) *Save {
	t.Helper()
	s, err := NewSave(dir, comm, opts)
	must(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func openReader(t *testing.T, dir string, opts *LoadOptions) *Reader {
	t.Helper()
	r, err := OpenReader(dir, opts)
	must(t, err)
	t.Cleanup(func() { r.Close() })
	return r
}

// readAll reads the whole tensor fqn into a new C-order slice.
func readAll[T Element](t *testing.T, r *Reader, fqn string) []T {
	t.Helper()
	e, err := r.Find(fqn)
	must(t, err)
	out := make([]T, e.Numel)
	must(t, ReadTensor(r, fqn, Whole(e.Shape), out))
	return out
}

func fill[T Element](n int, f func(i int) T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func equal[T comparable](t *testing.T, what string, got, want []T) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d elements, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: element %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}
