package bootstrap

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Printable makes s safe to print on a terminal: every control character
// but newline and tab (C0, DEL, C1) is written as a \u00XX escape and every
// byte that is not UTF-8 as \xNN. Text from a user's files reaches root's
// terminal through errors, plan diffs and status; raw, an ESC or BEL there
// could retitle the window, clear the screen or fake output. The \u00XX form
// is also a valid JSON escape, so JSON passed through stays valid JSON.
func Printable(s string) string {
	clean := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if isControl(r) || (r == utf8.RuneError && n == 1) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case isControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func isControl(r rune) bool {
	return (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r <= 0x9f)
}

// PrintableWriter passes everything written to w through Printable, for the
// command's stdout and stderr: whatever path a message takes, no raw
// control sequence reaches the terminal. Callers write whole messages (fmt
// writes each call at once), so a UTF-8 sequence is never split.
func PrintableWriter(w io.Writer) io.Writer { return printableWriter{w} }

type printableWriter struct{ w io.Writer }

func (p printableWriter) Write(b []byte) (int, error) {
	s := Printable(string(b))
	if _, err := io.WriteString(p.w, s); err != nil {
		return 0, err
	}
	return len(b), nil
}
