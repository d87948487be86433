package sluice

// Output is where an operator writes its output records and rejections.
// Its buffers are reused from batch to batch.
type Output struct {
	// Batch is the output batch being built. Whole-batch operators may fill
	// it directly, or replace it (out.Batch = *in for an in-place map).
	Batch    Batch
	rejected []RecordError
}

// Emit emits a record without headers; key nil means no key.
func (o *Output) Emit(key, value []byte, timestamp int64) {
	o.Batch.Push(key, value, timestamp)
}

// EmitString emits a record without headers whose value is s.
func (o *Output) EmitString(key []byte, s string, timestamp int64) {
	b := &o.Batch
	b.pushKey(key)
	b.Values = append(b.Values, s...)
	b.endRecord(timestamp)
}

// EmitWithHeaders emits a record with headers (for example r.Headers of
// the input record it comes from).
func (o *Output) EmitWithHeaders(key, value []byte, timestamp int64, headers Headers) {
	o.Batch.Push(key, value, timestamp)
	o.Batch.pushHeaders(headers)
}

// Forward emits r unchanged, headers included (a filter keeping it).
func (o *Output) Forward(r Record) {
	o.Batch.PushRecord(r)
}

// ForwardValue emits r with a new value; its key, timestamp and headers are
// kept (a map of values).
func (o *Output) ForwardValue(r Record, value []byte) {
	o.Batch.Push(r.Key, value, r.Timestamp)
	o.Batch.pushHeaders(r.Headers)
}

// AppendValue starts a value in place: append to the returned slice, then
// pass the result to EmitAppended. It saves the copy Emit makes:
//
//	v := out.AppendValue()
//	v = append(v, prefix...)
//	v = append(v, r.Value...)
//	out.EmitAppended(r.Key, v, r.Timestamp)
func (o *Output) AppendValue() []byte {
	return o.Batch.Values[len(o.Batch.Values):]
}

// EmitAppended emits a record whose value was built from AppendValue.
func (o *Output) EmitAppended(key, value []byte, timestamp int64) {
	b := &o.Batch
	n := len(b.Values)
	if cap(value) > 0 && cap(b.Values) > n && &value[:1][0] == &b.Values[:n+1][n] {
		// Built in place, possibly with headroom in the same array.
		if n+len(value) <= cap(b.Values) {
			b.pushKey(key) // keys live in another buffer: no overlap
			b.Values = b.Values[:n+len(value)]
			b.endRecord(timestamp)
			return
		}
	}
	b.Push(key, value, timestamp)
}

// Reject rejects input record index with reason: the host sends it to the
// dead-letter file (or stops the job when there is none).
func (o *Output) Reject(index int, reason string) {
	o.rejected = append(o.rejected, RecordError{Index: index, Reason: reason})
}
