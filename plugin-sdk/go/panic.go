package sluice

import (
	"runtime"
	"strconv"
	"strings"
)

// describePanic says what a recovered panic was and where it happened: its
// value, then " (at FILE:LINE in FUNC)" for the innermost frame below the
// panic that is not the runtime's. Call it from (a function called by) the
// deferred function that recovered p, while the panicking frames are still
// on the stack.
func describePanic(p any) string {
	return panicValue(p) + panicSite()
}

// panicValue is p as the Go runtime prints a panic's value, for the types
// it can print without package fmt.
func panicValue(p any) string {
	switch v := p.(type) {
	case error:
		return v.Error()
	case interface{ String() string }:
		return v.String()
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case int8:
		return strconv.FormatInt(int64(v), 10)
	case int16:
		return strconv.FormatInt(int64(v), 10)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case int64:
		return strconv.FormatInt(v, 10)
	case uint:
		return strconv.FormatUint(uint64(v), 10)
	case uint8:
		return strconv.FormatUint(uint64(v), 10)
	case uint16:
		return strconv.FormatUint(uint64(v), 10)
	case uint32:
		return strconv.FormatUint(uint64(v), 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case uintptr:
		return strconv.FormatUint(uint64(v), 10)
	case float32:
		return strconv.FormatFloat(float64(v), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return "a value with neither an Error nor a String method"
}

// panicSite is " (at FILE:LINE in FUNC)" for the frame that panicked, or "".
func panicSite() string {
	var pcs [64]uintptr
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs[:])])
	panicking := false
	for {
		f, more := frames.Next()
		if panicking && !strings.HasPrefix(f.Function, "runtime.") {
			return " (at " + f.File + ":" + strconv.Itoa(f.Line) + " in " + f.Function + ")"
		}
		if f.Function == "runtime.gopanic" {
			panicking = true
		}
		if !more {
			return ""
		}
	}
}
