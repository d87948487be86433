package main

import (
	"reflect"
	"strings"
	"testing"

	"sluice.dev/sdk"
)

func TestSplitsOnWhitespaceAndKeysByWord(t *testing.T) {
	h, err := sluice.NewHarness(New)
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Run(sluice.NewBatch(5, "  the quick\tfox ", "", "fox\x0bbox"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for r := range out.Records() {
		if string(r.Key) != string(r.Value) || r.Timestamp != 5 || r.Headers.Len() != 0 {
			t.Errorf("record %+v", r)
		}
		got = append(got, string(r.Value))
	}
	if want := []string{"the", "quick", "fox", "fox\x0bbox"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLowercaseAndUnkeyed(t *testing.T) {
	h, err := sluice.NewHarness(New, "lowercase", "true", "keyed", "false")
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Run(sluice.NewBatch(0, "The FOX"))
	if err != nil {
		t.Fatal(err)
	}
	for r := range out.Records() {
		if r.Key != nil {
			t.Errorf("unkeyed record has key %q", r.Key)
		}
	}
	if got, _ := h.RunLines("The FOX"); !reflect.DeepEqual(got, []string{"the", "fox"}) {
		t.Errorf("got %q", got)
	}
}

func TestSplitOnNonAlphanumericDropsPunctuation(t *testing.T) {
	h, err := sluice.NewHarness(New, "split_on", "non-alphanumeric", "keyed", "false")
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.RunLines(`It was -- in short, the café's "best"!`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"It", "was", "in", "short", "the", "café", "s", "best"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q", got)
	}
	_, err = sluice.NewHarness(New, "split_on", "commas")
	if err == nil || err.Error() != "bad configuration: setting `split_on` = \"commas\" is not valid (accepted: whitespace, non-alphanumeric)" {
		t.Errorf("got %v", err)
	}
}

func TestBadBooleanIsAConfigError(t *testing.T) {
	_, err := sluice.NewHarness(New, "lowercase", "yes")
	if err == nil || !strings.Contains(err.Error(), "setting `lowercase` = \"yes\" is not valid: provided string was not `true` or `false`") {
		t.Errorf("got %v", err)
	}
	_, err = sluice.NewHarness(New, "lowercas", "true")
	if err == nil || err.Error() != "bad configuration: unknown setting `lowercas` (accepted: split_on, lowercase, keyed)" {
		t.Errorf("got %v", err)
	}
}
