package sluice

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

type ownedHeader struct {
	key   string
	value *string
}

func headersOf(r Record) []ownedHeader {
	var hs []ownedHeader
	for h := range r.Headers.All() {
		oh := ownedHeader{key: string(h.Key)}
		if h.Value != nil {
			v := string(h.Value)
			oh.value = &v
		}
		hs = append(hs, oh)
	}
	return hs
}

// Records 0 and 3 without headers, 1 with a repeated key, an empty and a
// null value, 2 with one header.
func withHeaders() *Batch {
	b := &Batch{}
	b.Push(nil, []byte("a"), 1)
	b.Push([]byte("k"), []byte("b"), 2)
	b.PushHeader([]byte("h"), []byte("1"))
	b.PushHeader([]byte("h"), []byte{})
	b.PushHeader([]byte("n"), nil)
	b.Push(nil, []byte("c"), 3)
	b.PushHeader([]byte("x"), []byte("y"))
	b.Push(nil, []byte("d"), 4)
	return b
}

func TestAbsentAndEmptyKeysStayDistinct(t *testing.T) {
	b := &Batch{}
	b.Push(nil, []byte("a"), 1)
	b.Push([]byte{}, []byte("b"), 2)
	b.Push([]byte("k"), []byte("c"), 3)
	b.Push(nil, []byte("d"), 4)
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for r := range b.Records() {
		if r.Key == nil {
			keys = append(keys, "<none>")
		} else {
			keys = append(keys, string(r.Key))
		}
	}
	if want := []string{"<none>", "", "k", "<none>"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("keys %q", keys)
	}
	if r := b.Record(1); r.Key == nil || len(r.Key) != 0 {
		t.Errorf("record 1 key %v", r.Key)
	}
	if r := b.Record(3); r.Timestamp != 4 || string(r.Value) != "d" || r.Key != nil {
		t.Errorf("record 3: %+v", r)
	}
}

func TestUnkeyedBatchHasNoPresenceBytes(t *testing.T) {
	b := NewBatch(0, "x", "yz")
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(b.KeyPresent) != 0 || !reflect.DeepEqual(b.KeyEnds, []uint32{0, 0}) {
		t.Errorf("key columns %v %v", b.KeyPresent, b.KeyEnds)
	}
}

func TestHeadersBelongToTheirRecords(t *testing.T) {
	b := withHeaders()
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(b.HeaderEnds, []uint32{0, 3, 4, 4}) || !reflect.DeepEqual(b.HeaderValuePresent, []byte{1, 1, 0, 1}) {
		t.Fatalf("columns %v %v", b.HeaderEnds, b.HeaderValuePresent)
	}
	var viaIter, viaGet [][]ownedHeader
	for r := range b.Records() {
		viaIter = append(viaIter, headersOf(r))
	}
	for i := range b.Len() {
		viaGet = append(viaGet, headersOf(b.Record(i)))
	}
	if !reflect.DeepEqual(viaIter, viaGet) {
		t.Errorf("iter %v, get %v", viaIter, viaGet)
	}
	r := b.Record(1)
	if v, ok := r.Headers.Last("h"); !ok || v == nil || len(v) != 0 {
		t.Errorf("last h: %q %v", v, ok)
	}
	if v, ok := r.Headers.Last("n"); !ok || v != nil {
		t.Errorf("last n: %q %v", v, ok)
	}
	if _, ok := r.Headers.Last("x"); ok {
		t.Error("x is a header of record 2 only")
	}
	if b.Record(0).Headers.Len() != 0 || b.Record(3).Headers.Len() != 0 || b.Record(2).Headers.Len() != 1 {
		t.Error("header counts")
	}
}

func TestForwardKeepsHeadersAndEmitMakesNone(t *testing.T) {
	in := withHeaders()
	var out Output
	for r := range in.Records() {
		out.Forward(r)
		out.Emit(r.Key, r.Value, r.Timestamp)
		out.ForwardValue(r, []byte(strings.ToUpper(string(r.Value))))
	}
	if err := out.Batch.Validate(); err != nil {
		t.Fatal(err)
	}
	for i := range in.Len() {
		r := in.Record(i)
		fw, em, mp := out.Batch.Record(3*i), out.Batch.Record(3*i+1), out.Batch.Record(3*i+2)
		if !reflect.DeepEqual(headersOf(fw), headersOf(r)) || string(fw.Value) != string(r.Value) || (fw.Key == nil) != (r.Key == nil) {
			t.Errorf("forwarded %d: %+v", i, fw)
		}
		if em.Headers.Len() != 0 {
			t.Errorf("emitted %d has headers", i)
		}
		if !reflect.DeepEqual(headersOf(mp), headersOf(r)) || string(mp.Value) != strings.ToUpper(string(r.Value)) {
			t.Errorf("mapped %d: %+v", i, mp)
		}
	}
}

func TestEmitAppendedBuildsInPlace(t *testing.T) {
	var out Output
	out.Batch.Values = make([]byte, 0, 64)
	for _, w := range []string{"ab", "", "cde"} {
		v := out.AppendValue()
		v = append(v, '<')
		v = append(v, w...)
		out.EmitAppended(nil, v, 1)
	}
	if string(out.Batch.Values) != "<ab<<cde" || !reflect.DeepEqual(out.Batch.ValueEnds, []uint32{3, 4, 8}) {
		t.Errorf("%q %v", out.Batch.Values, out.Batch.ValueEnds)
	}
	// Past the capacity, append moves the value: it is copied.
	v := append(out.AppendValue(), strings.Repeat("x", 100)...)
	out.EmitAppended([]byte("k"), v, 2)
	if err := out.Batch.Validate(); err != nil || string(out.Batch.Record(3).Value) != strings.Repeat("x", 100) {
		t.Errorf("%v %q", err, out.Batch.Record(3).Value)
	}
}

func TestValidateCatchesBrokenBatches(t *testing.T) {
	for name, c := range map[string]struct {
		mutate func(*Batch)
		want   string
	}{
		"ends":       {func(b *Batch) { b.HeaderEnds[1] = 9 }, "headers.ends"},
		"ends-count": {func(b *Batch) { b.HeaderEnds = b.HeaderEnds[:3] }, "headers.ends has 3 entries for 4 records"},
		"null-span":  {func(b *Batch) { b.HeaderValuePresent[0] = 0 }, "null value but a value span"},
		"utf8":       {func(b *Batch) { b.HeaderKeys[0] = 0xff }, "not UTF-8"},
		"value-ends": {func(b *Batch) { b.ValueEnds[0] = 5 }, "value-ends"},
		"key-span": {func(b *Batch) {
			b.Keys = append(b.Keys, 'z')
			b.KeyEnds[0] = 1
			b.KeyEnds[1] = 2
			b.KeyEnds[2], b.KeyEnds[3] = 2, 2
		}, "record 0 has no key but a key span of 1 byte(s)"},
		"no-header-ends": {func(b *Batch) { b.HeaderEnds = nil }, "headers.ends is empty but there are 4 header entries"},
	} {
		b := withHeaders()
		c.mutate(b)
		if err := b.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", name, err, c.want)
		}
	}
}

func TestConfigMessagesMatchTheRustSDK(t *testing.T) {
	c := NewConfig("a", "1", "flag", "yes", "n", "12x", "empty", "")
	check := func(err error, want string) {
		t.Helper()
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindBadConfig || e.Message != want {
			t.Errorf("got %v, want %q", err, want)
		}
	}
	check(c.AllowOnly(), "unknown setting `a` (this operator takes no settings)")
	check(c.AllowOnly("a", "b"), "unknown setting `flag` (accepted: a, b)")
	_, err := c.Require("missing")
	check(err, "missing required setting `missing`")
	_, err = c.Bool("flag", false)
	check(err, "setting `flag` = \"yes\" is not valid: provided string was not `true` or `false`")
	_, err = c.Int("n", 0)
	check(err, "setting `n` = \"12x\" is not valid: invalid digit found in string")
	_, err = c.Int("empty", 0)
	check(err, "setting `empty` = \"\" is not valid: cannot parse integer from empty string")
	if v, err := c.Int("a", 0); err != nil || v != 1 {
		t.Errorf("Int: %v %v", v, err)
	}
	if v, err := c.Bool("unset", true); err != nil || !v {
		t.Errorf("Bool default: %v %v", v, err)
	}
	if got := Quote("tab\there \"q\" \\ \n é \x00 \u200b"); got != `"tab\there \"q\" \\ \n é \0 \u{200b}"` {
		t.Errorf("Quote: %s", got)
	}
}

type failing struct{}

func (failing) ProcessRecord(r Record, out *Output) error {
	switch string(r.Value) {
	case "bad":
		return errors.New("bad value")
	case "stop":
		return Failed("gave up")
	}
	out.Forward(r)
	return nil
}

func TestRejectionsAndFailures(t *testing.T) {
	h, _ := NewHarness(func(*Config) (failing, error) { return failing{}, nil })
	_, err := h.RunLines("ok", "bad", "ok", "bad")
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindBadRecords || len(e.Records) != 2 || e.Records[1].Index != 3 || e.Records[0].Reason != "bad value" {
		t.Fatalf("got %v", err)
	}
	if err.Error() != "2 bad record(s), first at index 1: bad value" {
		t.Errorf("message %q", err)
	}
	_, err = h.RunLines("ok", "stop")
	if !errors.As(err, &e) || e.Kind != KindFailed || err.Error() != "operator failed: gave up" {
		t.Errorf("got %v", err)
	}
	if got, err := h.RunLines("x", "y"); err != nil || !reflect.DeepEqual(got, []string{"x", "y"}) {
		t.Errorf("after errors: %v %v", got, err)
	}
}

func TestLogIsCapturedNatively(t *testing.T) {
	TakeLogs()
	Log(LevelWarn, "careful")
	if logs := TakeLogs(); len(logs) != 1 || logs[0] != (LogLine{LevelWarn, "careful"}) || logs[0].Level.String() != "warn" {
		t.Errorf("logs %v", logs)
	}
}

// A panic is described by its value and the frame that panicked (the Wasm
// glue prints this last, then traps, as a panic in Rust does).
func TestPanicsAreDescribedWithWhereTheyHappened(t *testing.T) {
	describe := func(f func()) (s string) {
		defer func() { s = describePanic(recover()) }()
		f()
		return ""
	}
	var values []int
	cases := []struct {
		f    func()
		want string
	}{
		{func() { panic("boom") }, "boom (at "},
		{func() { _ = values[len(values)] }, "runtime error: index out of range [0] with length 0 (at "},
		{func() { panic(errors.New("bad")) }, "bad (at "},
		{func() { panic(42) }, "42 (at "},
	}
	for _, c := range cases {
		got := describe(c.f)
		if !strings.HasPrefix(got, c.want) || !strings.Contains(got, "sdk_test.go:") ||
			!strings.Contains(got, " in sluice.dev/sdk.TestPanicsAreDescribedWithWhereTheyHappened.func") {
			t.Errorf("got %q, want %q... naming the test's closure", got, c.want)
		}
	}
}
