package sluice

import (
	"errors"
	"strconv"
)

// Operator is a stream operator: a map, flatMap, filter or key-by step.
//
// One value lives in each Wasm instance; the host keeps one instance per
// (operator, partition), so methods are never called concurrently and the
// operator may keep caches or counters in its fields.
type Operator interface {
	// ProcessRecord handles one input record, emitting zero or more output
	// records to out. A non-nil error rejects the record with err.Error() as
	// the reason, unless it is a *Error (Failed stops the job).
	ProcessRecord(r Record, out *Output) error
}

// BatchProcessor is implemented by operators that handle a whole batch at
// once, on its flat buffers, instead of record by record. The input is the
// operator's to change: a map that keeps record boundaries may change
// in.Values in place and set out.Batch = *in.
type BatchProcessor interface {
	ProcessBatch(in *Batch, out *Output) error
}

// Constructor builds an operator from its settings. It runs once per
// instance, before the first batch.
type Constructor[T Operator] func(cfg *Config) (T, error)

var registered func(cfg *Config) (Operator, error)

// Register makes newOp the operator of this component. Call it once, from an
// init function of package main.
func Register[T Operator](newOp Constructor[T]) {
	registered = func(cfg *Config) (Operator, error) { return newOp(cfg) }
}

// ErrorKind classifies an operator error as the host sees it.
type ErrorKind int

const (
	// KindBadConfig: the configuration is unusable; the job does not start.
	KindBadConfig ErrorKind = iota
	// KindBadRecords: some input records cannot be processed.
	KindBadRecords
	// KindFailed: the operator failed as a whole; the job stops.
	KindFailed
)

// RecordError says why one input record was rejected.
type RecordError struct {
	Index  int    // position of the record in its input batch
	Reason string // shown to the user and written to the dead-letter file
}

// Error is an operator error with its classification.
type Error struct {
	Kind    ErrorKind
	Message string        // for KindBadConfig and KindFailed
	Records []RecordError // for KindBadRecords
}

func (e *Error) Error() string {
	switch e.Kind {
	case KindBadConfig:
		return "bad configuration: " + e.Message
	case KindBadRecords:
		s := strconv.Itoa(len(e.Records)) + " bad record(s)"
		if len(e.Records) > 0 {
			s += ", first at index " + strconv.Itoa(e.Records[0].Index) + ": " + e.Records[0].Reason
		}
		return s
	default:
		return "operator failed: " + e.Message
	}
}

// BadConfig returns an error refusing the settings (from a constructor).
// The SDK does not use package fmt, which makes components about 0.9 MB
// larger; use fmt.Sprintf for the message if you like.
func BadConfig(message string) error {
	return &Error{Kind: KindBadConfig, Message: message}
}

// Failed returns an error that stops the job with this message.
func Failed(message string) error {
	return &Error{Kind: KindFailed, Message: message}
}

// asError classifies err the way the host will see it: a *Error keeps its
// kind, anything else is a failure.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Kind: KindFailed, Message: err.Error()}
}

// Level is the severity of a log line.
type Level uint8

const (
	LevelTrace Level = iota // very detailed tracing, normally hidden
	LevelDebug              // details useful while developing an operator
	LevelInfo               // normal operational messages
	LevelWarn               // something unexpected that the operator recovered from
	LevelError              // something failed
)

func (l Level) String() string {
	return [...]string{"trace", "debug", "info", "warn", "error"}[l]
}

// Log writes a line to the host log, tagged with the job, operator and
// worker. Natively (under go test) the line is kept for TakeLogs.
func Log(level Level, message string) {
	hostLog(level, message)
}

// run applies op to one batch: the one place that turns ProcessBatch or
// ProcessRecord plus rejections into the contract's result.
func run(op Operator, in *Batch, out *Output) error {
	out.rejected = out.rejected[:0]
	if bp, ok := op.(BatchProcessor); ok {
		if err := bp.ProcessBatch(in, out); err != nil {
			return asError(err)
		}
	} else {
		for r := range in.Records() {
			if err := op.ProcessRecord(r, out); err != nil {
				var e *Error
				if errors.As(err, &e) {
					return e
				}
				out.Reject(r.Index, err.Error())
			}
		}
	}
	if len(out.rejected) > 0 {
		return &Error{Kind: KindBadRecords, Records: out.rejected}
	}
	return nil
}
