package command

import "encoding/binary"

// What ScanJSON expects next.
type scanState uint8

const (
	wantValue        scanState = iota // a value
	wantValueOrClose                  // after '[': a value or ']'
	wantKeyOrClose                    // after '{': a key or '}'
	wantKey                           // after ',' in an object
	wantColon
	wantCommaOrClose // after a value in an array or object
	wantEnd          // after the outermost value
)

// ScanJSON reads b once and reports what three separate passes used to: valid is what
// json.Valid(b) reports (nesting deeper than encoding/json's limit of 10000 included),
// depth is the deepest nesting of arrays and objects, and compact reports that b has no
// white space outside strings, so json.Compact would leave it as it is. Every request's
// data and frame, and every reply a client reads, goes through it.
func ScanJSON(b []byte) (valid bool, depth int, compact bool) {
	const maxNesting = 10000 // encoding/json's
	var buf [64]byte
	open := buf[:0] // the enclosing brackets, innermost last
	compact = true
	state := wantValue
	i, n := 0, len(b)
	for {
		for i < n && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
			compact = false
			i++
		}
		if i == n {
			return state == wantEnd, depth, compact
		}
		c := b[i]
		switch state {
		case wantEnd:
			return false, depth, compact
		case wantColon:
			if c != ':' {
				return false, depth, compact
			}
			i++
			state = wantValue
			continue
		case wantCommaOrClose:
			top := open[len(open)-1]
			switch {
			case c == ',' && top == '{':
				i++
				state = wantKey
			case c == ',':
				i++
				state = wantValue
			case (c == '}' && top == '{') || (c == ']' && top == '['):
				i++
				open = open[:len(open)-1]
				state = afterValue(len(open))
			default:
				return false, depth, compact
			}
			continue
		case wantKeyOrClose, wantKey:
			if c == '}' && state == wantKeyOrClose {
				i++
				open = open[:len(open)-1]
				state = afterValue(len(open))
				continue
			}
			if c != '"' {
				return false, depth, compact
			}
			if i = skipString(b, i); i < 0 {
				return false, depth, compact
			}
			state = wantColon
			continue
		case wantValueOrClose:
			if c == ']' {
				i++
				open = open[:len(open)-1]
				state = afterValue(len(open))
				continue
			}
		}
		// A value.
		switch {
		case c == '{' || c == '[':
			open = append(open, c)
			if len(open) > maxNesting {
				return false, depth, compact
			}
			depth = max(depth, len(open))
			i++
			state = wantValueOrClose
			if c == '{' {
				state = wantKeyOrClose
			}
			continue
		case c == '"':
			i = skipString(b, i)
		case c == '-' || (c >= '0' && c <= '9'):
			i = skipNumber(b, i)
		case c == 't':
			i = skipLiteral(b, i, "true")
		case c == 'f':
			i = skipLiteral(b, i, "false")
		case c == 'n':
			i = skipLiteral(b, i, "null")
		default:
			i = -1
		}
		if i < 0 {
			return false, depth, compact
		}
		state = afterValue(len(open))
	}
}

// afterValue is what may follow a value inside open brackets.
func afterValue(open int) scanState {
	if open == 0 {
		return wantEnd
	}
	return wantCommaOrClose
}

// skipString returns the index after the string that starts at b[i] ('"'), or -1 when it
// is not a valid JSON string.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		if i = skipPlainWords(b, i); i == len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			i++
			if i == len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return -1
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

// skipPlainWords returns the index of the first 8-byte word from b[i] on that holds a
// byte a JSON string gives meaning to (a quote, a backslash or a control character), or of
// the last few bytes that make no whole word; the caller reads on from there one byte at a
// time. Strings are mostly plain text, and a word at a time is several times faster.
func skipPlainWords(b []byte, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q, bs := x^(ones*'"'), x^(ones*'\\')
		// A byte below 0x20, or equal to one of the two, sets its high bit here (bytes after
		// one that does may too, which only ends the run early).
		if ((x-ones*0x20)&^x|(q-ones)&^q|(bs-ones)&^bs)&highs != 0 {
			break
		}
	}
	return i
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// skipNumber returns the index after the number that starts at b[i], or -1 when none does:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	digits := func() bool {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > start
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return -1
		}
	}
	return i
}

func skipLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

func validJSON(b []byte) bool {
	valid, _, _ := ScanJSON(b)
	return valid
}
