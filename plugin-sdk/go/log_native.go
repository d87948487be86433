//go:build !wasip1

package sluice

func hostLog(level Level, message string) {
	logMu.Lock()
	capturedLog = append(capturedLog, LogLine{level, message})
	logMu.Unlock()
}
