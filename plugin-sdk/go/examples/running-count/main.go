// Command running-count is a stateful Sluice operator: a running count of
// records per key that survives a hot swap to its next version.
//
// For every input record it emits one record with the same key and
// timestamp (and no headers) whose value is the number of records with
// that key seen so far, this one included, as decimal text ("1", "2", ...).
// Records without a key are counted together, apart from the empty key.
// Counts live in the instance (one per partition) and never reset. It takes
// no settings.
//
// Snapshot format (text, version 1): the line "running-count 1", then one
// line per key in byte order of the keys: the count, a space, and the key
// in hex ("-" for the records without a key; nothing after the space for
// the empty key).
package main

import (
	"bytes"
	"encoding/hex"
	"slices"
	"strconv"

	"sluice.dev/sdk"
	"sluice.dev/sdk/stateful"
)

// RunningCount counts records per key.
type RunningCount struct {
	counts  map[string]*uint64
	unkeyed uint64 // records without a key
	value   []byte // the output value, reused
}

// New refuses any setting: the operator takes none.
func New(cfg *sluice.Config) (*RunningCount, error) {
	if err := cfg.AllowOnly(); err != nil {
		return nil, err
	}
	return &RunningCount{counts: map[string]*uint64{}}, nil
}

// ProcessRecord counts the record and emits its key's count so far.
func (op *RunningCount) ProcessRecord(r sluice.Record, out *sluice.Output) error {
	var n uint64
	if r.Key == nil {
		op.unkeyed++
		n = op.unkeyed
	} else if c, ok := op.counts[string(r.Key)]; ok { // no allocation
		*c++
		n = *c
	} else {
		n = 1
		op.counts[string(r.Key)] = &n
	}
	op.value = strconv.AppendUint(op.value[:0], n, 10)
	out.Emit(r.Key, op.value, r.Timestamp)
	return nil
}

const header = "running-count 1"

// Snapshot writes the counts in the format above.
func (op *RunningCount) Snapshot() ([]byte, error) {
	keys := make([]string, 0, len(op.counts))
	for k := range op.counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := []byte(header + "\n")
	if op.unkeyed > 0 {
		b = strconv.AppendUint(b, op.unkeyed, 10)
		b = append(b, " -\n"...)
	}
	for _, k := range keys {
		b = strconv.AppendUint(b, *op.counts[k], 10)
		b = append(b, ' ')
		b = hex.AppendEncode(b, []byte(k))
		b = append(b, '\n')
	}
	return b, nil
}

// Restore replaces the counts with those of a snapshot.
func (op *RunningCount) Restore(state []byte) error {
	lines := bytes.Split(state, []byte("\n"))
	if len(lines) < 2 || string(lines[0]) != header || len(lines[len(lines)-1]) != 0 {
		return sluice.Failed("not a running-count snapshot (version 1)")
	}
	counts, unkeyed := map[string]*uint64{}, uint64(0)
	for i, line := range lines[1 : len(lines)-1] {
		count, key, ok := bytes.Cut(line, []byte(" "))
		n, err := strconv.ParseUint(string(count), 10, 64)
		if !ok || err != nil || n == 0 {
			return sluice.Failed("bad line " + strconv.Itoa(i+2) + " in running-count snapshot: " + strconv.Quote(string(line)))
		}
		if string(key) == "-" {
			unkeyed = n
			continue
		}
		k, err := hex.DecodeString(string(key))
		if err != nil {
			return sluice.Failed("bad key on line " + strconv.Itoa(i+2) + " of running-count snapshot: " + err.Error())
		}
		counts[string(k)] = &n
	}
	op.counts, op.unkeyed = counts, unkeyed
	return nil
}

var _ stateful.Operator = (*RunningCount)(nil)

func init() { stateful.Register(New) }

func main() {}
