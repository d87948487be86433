package main

import (
	"errors"
	"reflect"
	"testing"

	"sluice.dev/sdk"
)

func TestPrefixesValues(t *testing.T) {
	op, err := sluice.NewHarness(New, "prefix", "* ")
	if err != nil {
		t.Fatal(err)
	}
	got, err := op.RunLines("hello", "world")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"* hello", "* world"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if logs := sluice.TakeLogs(); len(logs) != 1 || logs[0].Message != `prefixing values with "* "` {
		t.Errorf("logged %v", logs)
	}
}

func TestRejectsEmptyValuesByIndex(t *testing.T) {
	op, err := sluice.NewHarness(New)
	if err != nil {
		t.Fatal(err)
	}
	_, err = op.RunLines("ok", "")
	var e *sluice.Error
	if !errors.As(err, &e) || e.Kind != sluice.KindBadRecords {
		t.Fatalf("the empty value must be rejected, got %v", err)
	}
	if e.Records[0].Index != 1 || e.Records[0].Reason != "empty value" {
		t.Errorf("rejected %+v", e.Records)
	}
}

func TestUnknownSettingIsRefused(t *testing.T) {
	_, err := sluice.NewHarness(New, "prefx", "x")
	var e *sluice.Error
	if !errors.As(err, &e) || e.Kind != sluice.KindBadConfig {
		t.Fatalf("got %v", err)
	}
}
