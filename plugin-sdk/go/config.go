package sluice

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Config holds an operator's settings: the `config` table of its entry in
// the job file, as key/value strings (nested values arrive as TOML text).
type Config struct {
	entries [][2]string
}

// NewConfig builds a Config from key/value pairs: NewConfig("k", "v", ...).
func NewConfig(pairs ...string) *Config {
	if len(pairs)%2 != 0 {
		panic("sluice.NewConfig: odd number of arguments (want key, value pairs)")
	}
	c := &Config{}
	for i := 0; i < len(pairs); i += 2 {
		c.entries = append(c.entries, [2]string{pairs[i], pairs[i+1]})
	}
	return c
}

// Entries returns all key/value pairs in the order given.
func (c *Config) Entries() [][2]string { return c.entries }

// Get returns the value of key and whether it is set.
func (c *Config) Get(key string) (string, bool) {
	for _, e := range c.entries {
		if e[0] == key {
			return e[1], true
		}
	}
	return "", false
}

// GetOr returns the value of key, or def when it is not set.
func (c *Config) GetOr(key, def string) string {
	if v, ok := c.Get(key); ok {
		return v
	}
	return def
}

// Require returns the value of key, or a BadConfig error saying it is missing.
func (c *Config) Require(key string) (string, error) {
	if v, ok := c.Get(key); ok {
		return v, nil
	}
	return "", BadConfig("missing required setting `" + key + "`")
}

// AllowOnly refuses any key not among known, naming the accepted ones.
func (c *Config) AllowOnly(known ...string) error {
	for _, e := range c.entries {
		ok := false
		for _, k := range known {
			if e[0] == k {
				ok = true
				break
			}
		}
		if !ok {
			accepted := "this operator takes no settings"
			if len(known) > 0 {
				accepted = "accepted: " + strings.Join(known, ", ")
			}
			return BadConfig("unknown setting `" + e[0] + "` (" + accepted + ")")
		}
	}
	return nil
}

// Invalid returns the BadConfig error for a value of key that does not
// parse: setting `key` = "value" is not valid: why.
func (c *Config) Invalid(key, value, why string) error {
	return BadConfig("setting `" + key + "` = " + Quote(value) + " is not valid: " + why)
}

// Bool returns the boolean value of key ("true" or "false"), or def when it
// is not set.
func (c *Config) Bool(key string, def bool) (bool, error) {
	v, ok := c.Get(key)
	if !ok {
		return def, nil
	}
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, c.Invalid(key, v, "provided string was not `true` or `false`")
}

// Int returns the integer value of key (decimal, optional sign), or def
// when it is not set.
func (c *Config) Int(key string, def int64) (int64, error) {
	v, ok := c.Get(key)
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(v, "+"), 10, 64)
	if err != nil {
		why := "invalid digit found in string"
		switch {
		case v == "" || v == "+" || v == "-":
			why = "cannot parse integer from empty string"
			if v != "" {
				why = "invalid digit found in string"
			}
		case err.(*strconv.NumError).Err == strconv.ErrRange && strings.HasPrefix(v, "-"):
			why = "number too small to fit in target type"
		case err.(*strconv.NumError).Err == strconv.ErrRange:
			why = "number too large to fit in target type"
		}
		return 0, c.Invalid(key, v, why)
	}
	return n, nil
}

// Quote quotes s the way the Rust SDK's messages do (Rust's `{:?}` of a
// string), so that messages are the same in every language.
func Quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			r = utf8.RuneError // Rust strings are UTF-8; show a replacement
		}
		i += size
		switch r {
		case 0:
			b.WriteString(`\0`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		case '\n':
			b.WriteString(`\n`)
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		default:
			if unicode.IsPrint(r) || r == ' ' {
				b.WriteRune(r)
			} else {
				b.WriteString(`\u{` + strconv.FormatInt(int64(r), 16) + `}`)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
