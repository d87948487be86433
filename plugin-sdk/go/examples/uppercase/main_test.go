package main

import (
	"bytes"
	"testing"

	"sluice.dev/sdk"
)

func TestUppercasesValuesAndKeepsKeys(t *testing.T) {
	h, err := sluice.NewHarness(New)
	if err != nil {
		t.Fatal(err)
	}
	in := &sluice.Batch{}
	in.Push([]byte("k"), []byte("hello, World 1"), 7)
	in.Push(nil, []byte("ünïcode ok"), 8)
	out, err := h.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	r0, r1 := out.Record(0), out.Record(1)
	if string(r0.Key) != "k" || string(r0.Value) != "HELLO, WORLD 1" || r0.Timestamp != 7 {
		t.Errorf("record 0: %q %q %d", r0.Key, r0.Value, r0.Timestamp)
	}
	if r1.Key != nil || string(r1.Value) != "üNïCODE OK" {
		t.Errorf("record 1: %q %q", r1.Key, r1.Value)
	}
}

func TestBatchAndRecordPathsAgree(t *testing.T) {
	in := sluice.NewBatch(3, "abc", "", "Mixed Case")
	in.Push([]byte("k"), []byte("with headers"), 4)
	in.PushHeader([]byte("trace"), []byte("t-1"))
	in.PushHeader([]byte("trace"), nil)
	in.Push(nil, []byte("after"), 5)
	h, _ := sluice.NewHarness(New)
	fast, err := h.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	var slow sluice.Output
	for r := range in.Records() {
		h.Operator().ProcessRecord(r, &slow)
	}
	if err := slow.Batch.Validate(); err != nil {
		t.Fatal(err)
	}
	for i := range in.Len() {
		f, s := fast.Record(i), slow.Batch.Record(i)
		if !bytes.Equal(f.Value, s.Value) || !bytes.Equal(f.Key, s.Key) || (f.Key == nil) != (s.Key == nil) || f.Headers.Len() != s.Headers.Len() {
			t.Errorf("record %d differs: %+v vs %+v", i, f, s)
		}
	}
	if v, ok := fast.Record(3).Headers.Last("trace"); !ok || v != nil {
		t.Errorf("last trace header: %q %v", v, ok)
	}
}

func TestUpperMatchesBytewise(t *testing.T) {
	var all []byte
	for i := range 256 * 3 {
		all = append(all, byte(i*7+i/256))
	}
	for start := range 9 {
		for end := start; end <= len(all); end += 37 {
			got := append([]byte(nil), all[start:end]...)
			sluice.ASCIIUpper(got)
			for j, c := range all[start:end] {
				want := c
				if c >= 'a' && c <= 'z' {
					want = c - 32
				}
				if got[j] != want {
					t.Fatalf("byte %#x: got %#x", c, got[j])
				}
			}
		}
	}
}

func TestRefusesSettings(t *testing.T) {
	_, err := sluice.NewHarness(New, "x", "1")
	if err == nil || err.Error() != "bad configuration: unknown setting `x` (this operator takes no settings)" {
		t.Fatalf("got %v", err)
	}
}
