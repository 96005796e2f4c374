package shardpoint

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// saveStep saves step `step` through m: tensor "w" of 4x8 float32 filled with the step, and the
// metadata "loss" when given.
func saveStep(t *testing.T, m *Manager, step uint64, loss string) {
	t.Helper()
	s, err := m.NewSave(step, nil)
	must(t, err)
	defer s.Close()
	w := fill(32, func(int) float32 { return float32(step) })
	must(t, SaveTensor(s, "w", []uint64{4, 8}, Box{}, w))
	if loss != "" {
		must(t, s.SetMetadata("loss", loss))
	}
	must(t, s.Commit())
}

func stepNumbers(t *testing.T, m *Manager) []uint64 {
	t.Helper()
	steps, err := m.Steps()
	must(t, err)
	var out []uint64
	for _, s := range steps {
		out = append(out, s.Step)
	}
	return out
}

func TestManagerStepsLatestAndLoad(t *testing.T) {
	root := filepath.Join(t.TempDir(), "run")
	if _, err := OpenManager(root, nil, nil); err == nil {
		t.Fatal("a missing root opened without Create")
	} else {
		wantCode(t, err, ErrNotFound)
	}
	m, err := OpenManager(root, nil, &ManagerOptions{Create: true})
	must(t, err)
	defer m.Close()
	if _, ok, err := m.LatestStep(); err != nil || ok {
		t.Fatalf("empty root: latest ok=%v err=%v", ok, err)
	}
	for _, step := range []uint64{5, 50, 500} {
		saveStep(t, m, step, "")
	}
	latest, ok, err := m.LatestStep()
	must(t, err)
	if !ok || latest != 500 {
		t.Fatalf("latest %d %v", latest, ok)
	}
	steps, err := m.Steps()
	must(t, err)
	if len(steps) != 3 || steps[0].Step != 5 || steps[0].State != StepCommitted || steps[0].State.String() != "committed" {
		t.Fatalf("steps %+v", steps)
	}
	s := steps[1]
	if want, _ := m.StepPath(50); s.Path != want || s.Files != 2 || s.Bytes == 0 || s.Busy || s.HasMetric || s.Time.IsZero() {
		t.Fatalf("step 50: %+v", s)
	}
	r, err := m.OpenStep(latest, nil)
	must(t, err)
	defer r.Close()
	equal(t, "w", readAll[float32](t, r, "w"), fill(32, func(int) float32 { return 500 }))

	// A partial step (a killed save's directory) and an explicit deletion.
	must(t, os.Mkdir(filepath.Join(root, "step-7"), 0o755))
	steps, err = m.Steps()
	must(t, err)
	if steps[1].Step != 7 || steps[1].State != StepPartial || steps[1].Message == "" {
		t.Fatalf("step 7: %+v", steps[1])
	}
	must(t, m.DeleteStep(7))
	wantCode(t, m.DeleteStep(7), ErrNotFound)
	must(t, m.DeleteStep(5))
	if got := stepNumbers(t, m); !slices.Equal(got, []uint64{50, 500}) {
		t.Fatalf("after deleting: %v", got)
	}
	must(t, m.Close())
	_, err = m.Steps()
	wantCode(t, err, ErrState)
}

func TestManagerRetention(t *testing.T) {
	root := filepath.Join(t.TempDir(), "run")
	m, err := OpenManager(root, nil, &ManagerOptions{Create: true, KeepLast: 1, KeepBest: 1, BestMetric: "loss", BestMode: MetricMax})
	must(t, err)
	defer m.Close()
	var deleted []uint64
	for step, acc := range []string{"0.5", "0.9", "", "0.7", "0.6"} {
		saveStep(t, m, uint64(step+1), acc)
		if step == 3 { // saved steps 2 (kept: the best), 3 and 4 (the newest)
			plan, err := m.PlanRetention()
			must(t, err)
			if !slices.Equal(plan, []uint64{3}) {
				t.Fatalf("plan %v", plan)
			}
		}
		d, err := m.ApplyRetention()
		must(t, err)
		deleted = append(deleted, d...)
	}
	// Kept: the newest (5) and the best accuracy (2, 0.9).
	if !slices.Equal(deleted, []uint64{1, 3, 4}) {
		t.Fatalf("deleted %v", deleted)
	}
	steps, err := m.Steps()
	must(t, err)
	if len(steps) != 2 || steps[0].Step != 2 || steps[0].Metric != "0.9" || !steps[0].HasMetric || steps[1].Step != 5 {
		t.Fatalf("steps %+v", steps)
	}
	if _, err := OpenManager(root, nil, &ManagerOptions{KeepBest: 2}); err == nil {
		t.Fatal("KeepBest without BestMetric was accepted")
	} else {
		wantCode(t, err, ErrInvalid)
	}
}

func TestManagerGCAndDeleteCheckpoint(t *testing.T) {
	root := filepath.Join(t.TempDir(), "run")
	m, err := OpenManager(root, nil, &ManagerOptions{Create: true})
	must(t, err)
	defer m.Close()
	saveStep(t, m, 1, "")
	saveStep(t, m, 2, "")
	leftover := filepath.Join(root, ".deleting-step-0-0123456789abcdef")
	must(t, os.Mkdir(leftover, 0o755))
	must(t, os.WriteFile(filepath.Join(leftover, "x"), make([]byte, 10), 0o644))
	debris := "data-" + "0123456789abcdef0123456789abcdef" + "-r00000.bin"
	must(t, os.WriteFile(filepath.Join(root, "step-2", debris), make([]byte, 20), 0o644))
	found, err := m.GC(true)
	must(t, err)
	want := []Garbage{{".deleting-step-0-0123456789abcdef/", 10}, {"step-2/" + debris, 20}}
	if !slices.Equal(found, want) {
		t.Fatalf("dry run found %+v", found)
	}
	removed, err := m.GC(false)
	must(t, err)
	if !slices.Equal(removed, want) {
		t.Fatalf("gc removed %+v", removed)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("the leftover is still there: %v", err)
	}
	p, _ := m.StepPath(1)
	must(t, DeleteCheckpoint(p))
	wantCode(t, DeleteCheckpoint(root), ErrNotFound)
	if got := stepNumbers(t, m); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("steps %v", got)
	}
}

func TestManagerThreeRanksRetentionOnRankZero(t *testing.T) {
	root := filepath.Join(t.TempDir(), "run")
	deleted := make([][]uint64, 3)
	errs := runGroup(t, 3, func(comm *Comm) error {
		m, err := OpenManager(root, comm, &ManagerOptions{Create: true, KeepLast: 1})
		if err != nil {
			return err
		}
		defer m.Close()
		shape := []uint64{6, 4}
		lo, hi := part(6, comm.Rank(), 3)
		for step := uint64(1); step <= 3; step++ {
			s, err := m.NewSave(step, nil)
			if err != nil {
				return err
			}
			rows := fill(int((hi-lo)*4), func(i int) float64 { return float64(step*100) + float64(lo*4) + float64(i) })
			if err := SaveTensor(s, "w", shape, Rows(shape, lo, hi), rows); err != nil {
				s.Close()
				return err
			}
			err = s.Commit()
			s.Close()
			if err != nil {
				return err
			}
			d, err := m.ApplyRetention()
			if err != nil {
				return err
			}
			deleted[comm.Rank()] = append(deleted[comm.Rank()], d...)
		}
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	if !slices.Equal(deleted[0], []uint64{1, 2}) || len(deleted[1]) != 0 || len(deleted[2]) != 0 {
		t.Fatalf("deleted per rank: %v", deleted)
	}
	m, err := OpenManager(root, nil, nil)
	must(t, err)
	defer m.Close()
	r, err := m.OpenStep(3, nil)
	must(t, err)
	defer r.Close()
	equal(t, "w", readAll[float64](t, r, "w"), fill(24, func(i int) float64 { return 300 + float64(i) }))
	if got := stepNumbers(t, m); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("steps %v", got)
	}
}
