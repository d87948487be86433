package sluice

import (
	"bytes"
	"errors"
	"iter"
	"strconv"
	"unicode/utf8"
)

// Batch is a micro-batch in the contract's columnar layout (see
// wit/operator.wit). The fields are exported so that whole-batch operators
// can work on the buffers directly; Records, Push and Output are the
// convenient way.
type Batch struct {
	Keys       []byte   // key bytes of all records, concatenated
	KeyEnds    []uint32 // end offset of each record's key in Keys
	KeyPresent []byte   // per record, 0 when its key is absent; empty when no record has a key
	Values     []byte   // value bytes of all records, concatenated
	ValueEnds  []uint32 // end offset of each record's value; its length is the record count
	Timestamps []int64  // event time of each record, ms since the Unix epoch

	// The header columns (the contract's record-headers), in use only when
	// some record has headers: HeaderEnds is then one entry per record (the
	// end of its headers among the entries), else every Header* is empty.
	HeaderEnds         []uint32
	HeaderKeys         []byte   // key bytes of all header entries (UTF-8 text)
	HeaderKeyEnds      []uint32 // end offset of each entry's key
	HeaderValues       []byte   // value bytes of all header entries
	HeaderValueEnds    []uint32 // end offset of each entry's value
	HeaderValuePresent []byte   // per entry, 0 for a null value; empty when none is null
}

// Record is a read-only view of one record of a Batch. Its slices point
// into the batch: copy what you keep past the call.
type Record struct {
	Index     int    // position of the record in its input batch
	Key       []byte // nil when the record has no key (distinct from an empty key)
	Value     []byte
	Timestamp int64 // event time, milliseconds since the Unix epoch
	Headers   Headers
}

// Header is one header of a record.
type Header struct {
	Key   []byte // UTF-8 text, as Kafka's header keys are
	Value []byte // nil for a null value (distinct from an empty value)
}

// Headers are the headers of one record, in order (usually none).
type Headers struct {
	b          *Batch
	start, end uint32
}

// Len returns the number of headers.
func (h Headers) Len() int { return int(h.end - h.start) }

// All iterates over the headers in order.
func (h Headers) All() iter.Seq[Header] {
	return func(yield func(Header) bool) {
		for e := h.start; e < h.end; e++ {
			if !yield(h.b.headerEntry(int(e))) {
				return
			}
		}
	}
}

// Last returns the value of the last header with this key (Kafka's
// lastHeader) and whether there is one; the value is nil when it is null.
func (h Headers) Last(key string) (value []byte, ok bool) {
	for e := int(h.end) - 1; e >= int(h.start); e-- {
		if hd := h.b.headerEntry(e); string(hd.Key) == key {
			return hd.Value, true
		}
	}
	return nil, false
}

// nonNil is the base of present-but-empty keys and header values.
var nonNil = []byte{}

func span(buf []byte, start, end uint32) []byte {
	if start == end {
		return nonNil
	}
	return buf[start:end:end]
}

func (b *Batch) headerEntry(h int) Header {
	var ks, vs uint32
	if h > 0 {
		ks, vs = b.HeaderKeyEnds[h-1], b.HeaderValueEnds[h-1]
	}
	hd := Header{Key: span(b.HeaderKeys, ks, b.HeaderKeyEnds[h])}
	if len(b.HeaderValuePresent) == 0 || b.HeaderValuePresent[h] != 0 {
		hd.Value = span(b.HeaderValues, vs, b.HeaderValueEnds[h])
	}
	return hd
}

// NewBatch builds a batch of unkeyed records with these values, all at
// timestamp.
func NewBatch(timestamp int64, values ...string) *Batch {
	b := &Batch{}
	for _, v := range values {
		b.Push(nil, []byte(v), timestamp)
	}
	return b
}

// Len returns the number of records.
func (b *Batch) Len() int { return len(b.ValueEnds) }

// HasHeaders reports whether the header columns are in use.
func (b *Batch) HasHeaders() bool { return len(b.HeaderEnds) > 0 }

// Record returns record i.
func (b *Batch) Record(i int) Record {
	var vs, ks uint32
	if i > 0 {
		vs, ks = b.ValueEnds[i-1], b.KeyEnds[i-1]
	}
	r := Record{Index: i, Value: b.Values[vs:b.ValueEnds[i]:b.ValueEnds[i]], Timestamp: b.Timestamps[i]}
	if len(b.KeyPresent) > 0 && b.KeyPresent[i] != 0 {
		r.Key = span(b.Keys, ks, b.KeyEnds[i])
	}
	if len(b.HeaderEnds) > 0 {
		var hs uint32
		if i > 0 {
			hs = b.HeaderEnds[i-1]
		}
		r.Headers = Headers{b, hs, b.HeaderEnds[i]}
	}
	return r
}

// Records iterates over the records in order:
//
//	for r := range batch.Records() { ... }
func (b *Batch) Records() iter.Seq[Record] {
	return func(yield func(Record) bool) {
		keyed, headed := len(b.KeyPresent) > 0, len(b.HeaderEnds) > 0
		var vs, ks, hs uint32
		for i, ve := range b.ValueEnds {
			r := Record{Index: i, Value: b.Values[vs:ve:ve], Timestamp: b.Timestamps[i]}
			vs = ve
			if keyed {
				ke := b.KeyEnds[i]
				if b.KeyPresent[i] != 0 {
					r.Key = span(b.Keys, ks, ke)
				}
				ks = ke
			}
			if headed {
				he := b.HeaderEnds[i]
				r.Headers = Headers{b, hs, he}
				hs = he
			}
			if !yield(r) {
				return
			}
		}
	}
}

// Push appends a record without headers; key nil means no key.
func (b *Batch) Push(key, value []byte, timestamp int64) {
	// One straight run of appends: this is the hot path of every emit.
	if key != nil {
		if len(b.KeyPresent) != len(b.ValueEnds) {
			b.materialiseKeyPresent()
		}
		b.Keys = append(b.Keys, key...)
		b.KeyPresent = append(b.KeyPresent, 1)
	} else if len(b.KeyPresent) != 0 {
		b.KeyPresent = append(b.KeyPresent, 0)
	}
	b.KeyEnds = append(b.KeyEnds, uint32(len(b.Keys)))
	b.Values = append(b.Values, value...)
	b.ValueEnds = append(b.ValueEnds, uint32(len(b.Values)))
	b.Timestamps = append(b.Timestamps, timestamp)
	if len(b.HeaderEnds) != 0 {
		b.HeaderEnds = append(b.HeaderEnds, uint32(len(b.HeaderKeyEnds)))
	}
}

// materialiseKeyPresent writes "absent" for the records before the first
// keyed one.
func (b *Batch) materialiseKeyPresent() {
	for len(b.KeyPresent) < len(b.ValueEnds) {
		b.KeyPresent = append(b.KeyPresent, 0)
	}
}

// PushRecord appends a copy of r, headers included (from this batch or
// another).
func (b *Batch) PushRecord(r Record) {
	b.Push(r.Key, r.Value, r.Timestamp)
	b.pushHeaders(r.Headers)
}

// PushHeader adds a header to the last record pushed; value nil is a null
// value. The key should be UTF-8 text: the host refuses a batch whose
// header keys are not. It panics when the batch has no record.
func (b *Batch) PushHeader(key, value []byte) {
	n := b.Len()
	if n == 0 {
		panic("sluice: PushHeader on an empty batch: push the record first")
	}
	// First header of the batch: "no headers" for the records before it.
	for len(b.HeaderEnds) < n {
		b.HeaderEnds = append(b.HeaderEnds, uint32(len(b.HeaderKeyEnds)))
	}
	b.HeaderKeys = append(b.HeaderKeys, key...)
	b.HeaderKeyEnds = append(b.HeaderKeyEnds, uint32(len(b.HeaderKeys)))
	if value != nil {
		b.HeaderValues = append(b.HeaderValues, value...)
		if len(b.HeaderValuePresent) > 0 {
			b.HeaderValuePresent = append(b.HeaderValuePresent, 1)
		}
	} else {
		// First null value: "present" for the entries before it.
		for len(b.HeaderValuePresent) < len(b.HeaderValueEnds) {
			b.HeaderValuePresent = append(b.HeaderValuePresent, 1)
		}
		b.HeaderValuePresent = append(b.HeaderValuePresent, 0)
	}
	b.HeaderValueEnds = append(b.HeaderValueEnds, uint32(len(b.HeaderValues)))
	b.HeaderEnds[n-1] = uint32(len(b.HeaderKeyEnds))
}

func (b *Batch) pushHeaders(h Headers) {
	for e := h.start; e < h.end; e++ {
		hd := h.b.headerEntry(int(e))
		b.PushHeader(hd.Key, hd.Value)
	}
}

func (b *Batch) pushKey(key []byte) {
	if key != nil {
		// First keyed record: "absent" for the records before it.
		b.materialiseKeyPresent()
		b.Keys = append(b.Keys, key...)
		b.KeyPresent = append(b.KeyPresent, 1)
	} else if len(b.KeyPresent) > 0 {
		b.KeyPresent = append(b.KeyPresent, 0)
	}
	b.KeyEnds = append(b.KeyEnds, uint32(len(b.Keys)))
}

func (b *Batch) endRecord(timestamp int64) {
	b.ValueEnds = append(b.ValueEnds, uint32(len(b.Values)))
	b.Timestamps = append(b.Timestamps, timestamp)
	if len(b.HeaderEnds) > 0 {
		b.HeaderEnds = append(b.HeaderEnds, uint32(len(b.HeaderKeyEnds)))
	}
}

// Reset empties the batch, keeping its buffers' capacity.
func (b *Batch) Reset() {
	*b = Batch{
		b.Keys[:0], b.KeyEnds[:0], b.KeyPresent[:0], b.Values[:0], b.ValueEnds[:0], b.Timestamps[:0],
		b.HeaderEnds[:0], b.HeaderKeys[:0], b.HeaderKeyEnds[:0], b.HeaderValues[:0], b.HeaderValueEnds[:0], b.HeaderValuePresent[:0],
	}
}

// Clone returns a deep copy of the batch.
func (b *Batch) Clone() *Batch {
	return &Batch{
		bytes.Clone(b.Keys), cloneU32(b.KeyEnds), bytes.Clone(b.KeyPresent), bytes.Clone(b.Values), cloneU32(b.ValueEnds), append([]int64(nil), b.Timestamps...),
		cloneU32(b.HeaderEnds), bytes.Clone(b.HeaderKeys), cloneU32(b.HeaderKeyEnds), bytes.Clone(b.HeaderValues), cloneU32(b.HeaderValueEnds), bytes.Clone(b.HeaderValuePresent),
	}
}

func cloneU32(s []uint32) []uint32 { return append([]uint32(nil), s...) }

// Validate checks the layout rules of the contract (the host checks them on
// every batch an operator returns).
func (b *Batch) Validate() error {
	n := b.Len()
	if len(b.KeyEnds) != n {
		return errors.New("key-ends has " + itoa(len(b.KeyEnds)) + " entries for " + itoa(n) + " records")
	}
	if len(b.KeyPresent) != 0 && len(b.KeyPresent) != n {
		return errors.New("key-present has " + itoa(len(b.KeyPresent)) + " entries for " + itoa(n) + " records")
	}
	if len(b.Timestamps) != n {
		return errors.New("timestamps has " + itoa(len(b.Timestamps)) + " entries for " + itoa(n) + " records")
	}
	if err := checkEnds("value-ends", b.ValueEnds, len(b.Values)); err != nil {
		return err
	}
	if err := checkEnds("key-ends", b.KeyEnds, len(b.Keys)); err != nil {
		return err
	}
	var start uint32
	for i, end := range b.KeyEnds {
		present := len(b.KeyPresent) > 0 && b.KeyPresent[i] != 0
		if !present && end != start {
			return errors.New("record " + itoa(i) + " has no key but a key span of " + itoa(end-start) + " byte(s)")
		}
		start = end
	}
	entries := len(b.HeaderKeyEnds)
	if len(b.HeaderEnds) == 0 {
		if entries != 0 || len(b.HeaderValueEnds) != 0 {
			return errors.New("headers.ends is empty but there are " + itoa(max(entries, len(b.HeaderValueEnds))) + " header entries")
		}
	} else if len(b.HeaderEnds) != n {
		return errors.New("headers.ends has " + itoa(len(b.HeaderEnds)) + " entries for " + itoa(n) + " records")
	}
	if len(b.HeaderValueEnds) != entries {
		return errors.New("headers.value-ends has " + itoa(len(b.HeaderValueEnds)) + " entries for " + itoa(entries) + " header entries")
	}
	if len(b.HeaderValuePresent) != 0 && len(b.HeaderValuePresent) != entries {
		return errors.New("headers.value-present has " + itoa(len(b.HeaderValuePresent)) + " entries for " + itoa(entries) + " header entries")
	}
	if err := checkEnds("headers.ends", b.HeaderEnds, entries); err != nil {
		return err
	}
	if err := checkEnds("headers.key-ends", b.HeaderKeyEnds, len(b.HeaderKeys)); err != nil {
		return err
	}
	if err := checkEnds("headers.value-ends", b.HeaderValueEnds, len(b.HeaderValues)); err != nil {
		return err
	}
	start = 0
	for h, end := range b.HeaderKeyEnds {
		if !utf8.Valid(b.HeaderKeys[start:end]) {
			return errors.New("header key " + itoa(h) + " is not UTF-8 text")
		}
		start = end
	}
	start = 0
	for h, end := range b.HeaderValueEnds {
		null := len(b.HeaderValuePresent) > 0 && b.HeaderValuePresent[h] == 0
		if null && end != start {
			return errors.New("header " + itoa(h) + " has a null value but a value span of " + itoa(end-start) + " byte(s)")
		}
		start = end
	}
	return nil
}

func checkEnds(name string, ends []uint32, dataLen int) error {
	var prev uint32
	for i, e := range ends {
		if e < prev {
			return errors.New(name + "[" + itoa(i) + "] = " + itoa(e) + " is below the previous end " + itoa(prev))
		}
		prev = e
	}
	if int(prev) != dataLen {
		return errors.New(name + " ends at " + itoa(prev) + " but its buffer has " + itoa(dataLen) + " bytes")
	}
	return nil
}

func itoa[T ~int | ~uint32](n T) string { return strconv.Itoa(int(n)) }
