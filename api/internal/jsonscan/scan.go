package jsonscan

import (
	"encoding/binary"
	"strconv"
)

// Scanner is a position in a valid JSON text. Its methods check the shape the caller
// expects, not the syntax, which command.ScanJSON has checked.
type Scanner struct {
	b []byte
	i int
}

// New scans b, which must be valid JSON.
func New(b []byte) Scanner { return Scanner{b: b} }

// Space skips white space.
func (s *Scanner) Space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// End reports whether only white space is left.
func (s *Scanner) End() bool {
	s.Space()
	return s.i == len(s.b)
}

// Byte consumes c after optional white space.
func (s *Scanner) Byte(c byte) bool {
	s.Space()
	if s.i >= len(s.b) || s.b[s.i] != c {
		return false
	}
	s.i++
	return true
}

// Literal consumes lit (true, false) after optional white space.
func (s *Scanner) Literal(lit string) bool {
	s.Space()
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// Bool reads true or false.
func (s *Scanner) Bool() (v, ok bool) {
	if s.Literal("true") {
		return true, true
	}
	return false, s.Literal("false")
}

// Str reads a string of printable ASCII without escapes and returns its bytes, quotes
// excluded (they alias the scanned text). Any other string reports false: encoding/json
// would have to unescape it or replace bad UTF-8 in it.
func (s *Scanner) Str() ([]byte, bool) {
	if !s.Byte('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		if s.i = plainWords(s.b, s.i); s.i == len(s.b) {
			break
		}
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], true
		case c == '\\' || c < 0x20 || c > 0x7e:
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// QuotedStr is Str that returns the string with its quotes, as time.Time.UnmarshalJSON
// takes it.
func (s *Scanner) QuotedStr() ([]byte, bool) {
	s.Space()
	start := s.i
	if _, ok := s.Str(); !ok {
		return nil, false
	}
	return s.b[start:s.i], true
}

// digits reads an optional minus sign and digits, and reports false for a number with a
// fraction or an exponent (encoding/json refuses those for integer fields).
func (s *Scanner) digits(neg bool) ([]byte, bool) {
	s.Space()
	start := s.i
	if neg && s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	if s.i == start || s.b[s.i-1] == '-' {
		return nil, false
	}
	if s.i < len(s.b) {
		if c := s.b[s.i]; c == '.' || c == 'e' || c == 'E' {
			return nil, false
		}
	}
	return s.b[start:s.i], true
}

// Uint reads a non-negative integer that fits uint64.
func (s *Scanner) Uint() (uint64, bool) {
	d, ok := s.digits(false)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(string(d), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// Int reads an integer that fits int64.
func (s *Scanner) Int() (int64, bool) {
	d, ok := s.digits(true)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(d), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// Value skips one value of any kind and returns its bytes (aliasing the scanned text). A
// value ends after its string's closing quote, at the bracket that closes it, or, for a
// number or literal, before the next delimiter or white space.
func (s *Scanner) Value() ([]byte, bool) {
	s.Space()
	start := s.i
	depth := 0
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			s.i++
			for s.i = plainWords(s.b, s.i); s.i < len(s.b) && s.b[s.i] != '"'; s.i = plainWords(s.b, s.i) {
				if s.b[s.i] == '\\' {
					s.i++
				}
				s.i++
			}
			s.i++
			if depth == 0 {
				return s.b[start:min(s.i, len(s.b))], s.i <= len(s.b)
			}
		case '{', '[':
			depth++
			s.i++
		case '}', ']':
			if depth == 0 {
				return s.b[start:s.i], s.i > start
			}
			depth--
			s.i++
			if depth == 0 {
				return s.b[start:s.i], true
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return s.b[start:s.i], s.i > start
			}
			s.i++
		default:
			s.i++
		}
	}
	return s.b[start:], depth == 0 && s.i > start
}

// Object reads an object, calling field with each key (printable ASCII without escapes,
// aliasing the scanned text) once its colon is consumed; field reads the value and reports
// whether it could. Object reports false when a key is not such a string or field refused.
func (s *Scanner) Object(field func(key []byte) bool) bool {
	if !s.Byte('{') {
		return false
	}
	if s.Byte('}') {
		return true
	}
	for {
		k, ok := s.Str()
		if !ok || !s.Byte(':') || !field(k) {
			return false
		}
		if s.Byte('}') {
			return true
		}
		if !s.Byte(',') {
			return false
		}
	}
}

// plainWords returns the index of the first 8-byte word from b[i] on that holds a quote, a
// backslash, a control character or a byte outside printable ASCII, or of the last few
// bytes that make no whole word: the bytes before it are plain string text.
func plainWords(b []byte, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q, bs, del := x^(ones*'"'), x^(ones*'\\'), x^(ones*0x7f)
		// A byte below 0x20, from 0x80 up, or equal to one of the three sets its high bit
		// here (bytes after one that does may too, which only ends the run early).
		if (x|(x-ones*0x20)&^x|(q-ones)&^q|(bs-ones)&^bs|(del-ones)&^del)&highs != 0 {
			break
		}
	}
	return i
}
