// Command uppercase is a Sluice map that upper-cases the ASCII letters of
// each value. Keys, key presence, timestamps and headers pass through
// unchanged.
//
// It works on the whole batch at once: the value buffer is converted in
// place (sluice.ASCIIUpper: simd128 in the component); record boundaries
// do not move, so the input batch becomes the output batch without a copy.
package main

import "sluice.dev/sdk"

// Uppercase upper-cases ASCII letters of every value.
type Uppercase struct{}

// New refuses any setting: the operator takes none.
func New(cfg *sluice.Config) (*Uppercase, error) {
	if err := cfg.AllowOnly(); err != nil {
		return nil, err
	}
	return &Uppercase{}, nil
}

// ProcessRecord is the record-at-a-time form, kept for clarity and tests.
func (*Uppercase) ProcessRecord(r sluice.Record, out *sluice.Output) error {
	v := append([]byte(nil), r.Value...)
	sluice.ASCIIUpper(v)
	out.ForwardValue(r, v)
	return nil
}

// ProcessBatch converts the whole value buffer in place.
func (*Uppercase) ProcessBatch(in *sluice.Batch, out *sluice.Output) error {
	sluice.ASCIIUpper(in.Values)
	out.Batch = *in
	return nil
}

func init() { sluice.Register(New) }

func main() {}
