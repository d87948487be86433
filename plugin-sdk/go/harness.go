package sluice

import "sync"

// Harness runs an operator natively, without Wasm, for unit tests:
//
//	h, err := sluice.NewHarness(New, "prefix", "* ")
//	out, err := h.RunLines("hello", "world")
type Harness[T Operator] struct {
	op  T
	out Output
}

// NewHarness builds the operator with newOp from key/value setting pairs, as
// the host does with the job file's settings.
func NewHarness[T Operator](newOp Constructor[T], settings ...string) (*Harness[T], error) {
	op, err := newOp(NewConfig(settings...))
	if err != nil {
		return nil, err
	}
	return &Harness[T]{op: op}, nil
}

// Operator returns the operator under test.
func (h *Harness[T]) Operator() T { return h.op }

// Run processes one batch (a copy of in) and returns a copy of the output
// batch, or the operator's error (a *Error; KindBadRecords lists the
// rejected records).
func (h *Harness[T]) Run(in *Batch) (*Batch, error) {
	h.out.Batch.Reset()
	if err := run(h.op, in.Clone(), &h.out); err != nil {
		return nil, err
	}
	out := h.out.Batch.Clone()
	if err := out.Validate(); err != nil {
		return nil, Failed("the host would refuse this output batch: " + err.Error())
	}
	return out, nil
}

// RunLines processes one batch of unkeyed records with these values at
// timestamp 0 and returns the output values as strings.
func (h *Harness[T]) RunLines(lines ...string) ([]string, error) {
	out, err := h.Run(NewBatch(0, lines...))
	if err != nil {
		return nil, err
	}
	values := []string{}
	for r := range out.Records() {
		values = append(values, string(r.Value))
	}
	return values, nil
}

// LogLine is a line an operator logged.
type LogLine struct {
	Level   Level
	Message string
}

var (
	logMu       sync.Mutex
	capturedLog []LogLine
)

// TakeLogs returns the lines logged natively (outside Wasm) since the last
// call, and forgets them.
func TakeLogs() []LogLine {
	logMu.Lock()
	defer logMu.Unlock()
	l := capturedLog
	capturedLog = nil
	return l
}
