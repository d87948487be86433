// Command {{NAME}} is a Sluice operator.
//
// It prefixes every value with a configurable text and rejects empty
// values. Settings (the `config` table of the operator in a job file):
//
//   - prefix (default "> "): text put in front of each value.
//
// Build it with `sluice plugin build`, try it with `sluice plugin test`.
package main

import (
	"errors"

	"sluice.dev/sdk"
)

// {{TYPE}} is the operator. One value lives in each Wasm instance; the host
// keeps one instance per partition, so its fields may hold state between
// batches.
type {{TYPE}} struct {
	prefix []byte
	value  []byte // the output value being built, reused from record to record
}

// New reads the settings; refusing them stops the job before it starts.
func New(cfg *sluice.Config) (*{{TYPE}}, error) {
	if err := cfg.AllowOnly("prefix"); err != nil {
		return nil, err
	}
	prefix := cfg.GetOr("prefix", "> ")
	sluice.Log(sluice.LevelInfo, "prefixing values with "+sluice.Quote(prefix))
	return &{{TYPE}}{prefix: []byte(prefix)}, nil
}

var errEmpty = errors.New("empty value")

// ProcessRecord is called for each record of a batch. Emit any number of
// records to out; return an error to reject the record (it goes to the
// job's dead-letter file with the error's text as the reason).
func (op *{{TYPE}}) ProcessRecord(r sluice.Record, out *sluice.Output) error {
	if len(r.Value) == 0 {
		return errEmpty
	}
	op.value = append(append(op.value[:0], op.prefix...), r.Value...)
	out.Emit(r.Key, op.value, r.Timestamp)
	return nil
}

func init() { sluice.Register(New) }

// main is not called: the component's exports are the entry points.
func main() {}
