package shardpoint

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// safetensorsHeader reads the JSON header of a safetensors file and the offset of its data.
func safetensorsHeader(t *testing.T, path string) (map[string]json.RawMessage, []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	must(t, err)
	n := binary.LittleEndian.Uint64(raw[:8])
	var header map[string]json.RawMessage
	must(t, json.Unmarshal(raw[8:8+n], &header))
	return header, raw[8+n:]
}

func TestConvertToSafetensorsAndBack(t *testing.T) {
	dir := ckpt(t)
	w := fill(6*5, func(i int) float32 { return float32(i) * 0.5 })
	ids := fill(7, func(i int) int64 { return int64(i) - 3 })
	s := newSave(t, dir, nil, nil)
	must(t, SaveTensor(s, "w", []uint64{6, 5}, Box{}, w))
	must(t, SaveTensor(s, "ids", []uint64{7}, Box{}, ids))
	must(t, s.SetMetadata("step", "7"))
	must(t, s.Commit())

	out := filepath.Join(t.TempDir(), "model.safetensors")
	var reports []Progress
	must(t, ConvertToSafetensors(context.Background(), dir, out, &ConvertOptions{Progress: func(p Progress) {
		reports = append(reports, p)
	}}))
	if len(reports) < 2 || reports[0].Phase != PhaseConvert || reports[len(reports)-1].Done != uint64(6*5*4+7*8) {
		t.Fatalf("reports %v", reports)
	}
	header, data := safetensorsHeader(t, out)
	var entry struct {
		Dtype       string   `json:"dtype"`
		Shape       []uint64 `json:"shape"`
		DataOffsets []uint64 `json:"data_offsets"`
	}
	must(t, json.Unmarshal(header["w"], &entry))
	if entry.Dtype != "F32" || len(entry.Shape) != 2 || entry.Shape[0] != 6 || entry.Shape[1] != 5 {
		t.Fatalf("w: %+v", entry)
	}
	got := data[entry.DataOffsets[0]:entry.DataOffsets[1]]
	for i, v := range w {
		if math.Float32frombits(binary.LittleEndian.Uint32(got[4*i:])) != v {
			t.Fatalf("w[%d] in the file differs", i)
		}
	}
	var meta map[string]string
	must(t, json.Unmarshal(header["__metadata__"], &meta))
	if meta["step"] != "7" {
		t.Fatalf("__metadata__ %v", meta)
	}

	back := ckpt(t)
	must(t, ConvertFromSafetensors(context.Background(), out, back, &ConvertOptions{Save: &SaveOptions{Codec: CodecZstd}}))
	r := openReader(t, back, nil)
	equal(t, "w", readAll[float32](t, r, "w"), w)
	equal(t, "ids", readAll[int64](t, r, "ids"), ids)
	if v, _ := r.MetadataValue("step"); v != "7" {
		t.Fatalf("metadata step %q", v)
	}

	// A sharded model directory: one file per tensor here, plus the index.
	model := filepath.Join(t.TempDir(), "hf")
	must(t, ConvertToSafetensors(context.Background(), dir, model, &ConvertOptions{MaxShardSize: 64}))
	index, err := os.ReadFile(filepath.Join(model, "model.safetensors.index.json"))
	must(t, err)
	if !bytes.Contains(index, []byte(`"weight_map"`)) {
		t.Fatalf("index %s", index)
	}
	again := ckpt(t)
	must(t, ConvertFromSafetensors(context.Background(), model, again, nil))
	equal(t, "w", readAll[float32](t, openReader(t, again, nil), "w"), w)
}

func TestConvertCanceledOrRefusedLeavesNothing(t *testing.T) {
	dir := ckpt(t)
	s := newSave(t, dir, nil, nil)
	must(t, SaveTensor(s, "w", []uint64{1024}, Box{}, make([]float32, 1024)))
	must(t, s.AddBytes("blob", []byte("x")))
	must(t, s.Commit())
	out := filepath.Join(t.TempDir(), "m.safetensors")
	wantCode(t, ConvertToSafetensors(context.Background(), dir, out, nil), ErrKind) // a blob
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := ConvertToSafetensors(ctx, dir, out, &ConvertOptions{SkipBytes: true})
	if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("%v: want ErrCanceled and context.Canceled", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
		t.Fatalf("left behind: %v", entries)
	}
	must(t, ConvertToSafetensors(context.Background(), dir, out, &ConvertOptions{SkipBytes: true}))
	raw, err := os.ReadFile(out)
	must(t, err)
	bad := filepath.Join(t.TempDir(), "truncated.safetensors")
	must(t, os.WriteFile(bad, raw[:len(raw)-10], 0o644))
	target := ckpt(t)
	err = ConvertFromSafetensors(context.Background(), bad, target, nil)
	if err == nil {
		t.Fatal("a truncated file converted")
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		if _, err := OpenReader(target, nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a checkpoint was left at %s: %v", target, err)
		}
	}
}
