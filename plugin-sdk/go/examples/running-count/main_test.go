package main

import (
	"reflect"
	"testing"

	"sluice.dev/sdk"
)

type rec struct{ key, value string }

func run(t *testing.T, h *sluice.Harness[*RunningCount], in *sluice.Batch) []rec {
	t.Helper()
	out, err := h.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	var got []rec
	for r := range out.Records() {
		k := "<none>"
		if r.Key != nil {
			k = string(r.Key)
		}
		got = append(got, rec{k, string(r.Value)})
	}
	return got
}

func batch(keys ...string) *sluice.Batch {
	b := &sluice.Batch{}
	for i, k := range keys {
		if k == "<none>" {
			b.Push(nil, []byte("v"), int64(i))
		} else {
			b.Push([]byte(k), []byte("v"), int64(i))
		}
	}
	return b
}

func TestCountsPerKeyAcrossBatches(t *testing.T) {
	h, err := sluice.NewHarness(New)
	if err != nil {
		t.Fatal(err)
	}
	got := run(t, h, batch("a", "b", "a", "<none>", ""))
	want := []rec{{"a", "1"}, {"b", "1"}, {"a", "2"}, {"<none>", "1"}, {"", "1"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	got = run(t, h, batch("a", "<none>", ""))
	want = []rec{{"a", "3"}, {"<none>", "2"}, {"", "2"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestSnapshotMovesToANewInstance(t *testing.T) {
	old, _ := sluice.NewHarness(New)
	run(t, old, batch("a", "a", "b\n", "<none>", ""))
	state, err := old.Operator().Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if want := "running-count 1\n1 -\n1 \n2 61\n1 620a\n"; string(state) != want {
		t.Errorf("snapshot %q, want %q", state, want)
	}
	next, _ := sluice.NewHarness(New)
	if err := next.Operator().Restore(state); err != nil {
		t.Fatal(err)
	}
	got := run(t, next, batch("a", "b\n", "<none>", "", "c"))
	want := []rec{{"a", "3"}, {"b\n", "2"}, {"<none>", "2"}, {"", "2"}, {"c", "1"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestRestoreRefusesOtherData(t *testing.T) {
	h, _ := sluice.NewHarness(New)
	for _, bad := range []string{"", "1\nx", "running-count 1\n1 zz\n", "running-count 1\nx 61\n", "running-count 2\n"} {
		if err := h.Operator().Restore([]byte(bad)); err == nil {
			t.Errorf("restored %q", bad)
		}
	}
}

func TestRefusesSettings(t *testing.T) {
	if _, err := sluice.NewHarness(New, "start", "1"); err == nil {
		t.Fatal("accepted a setting")
	}
}
