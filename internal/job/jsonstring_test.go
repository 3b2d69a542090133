package job

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// trickyText is text that encoders tell apart: HTML characters, the
// line and paragraph separators, control characters, invalid UTF-8,
// quotes, backslashes and characters beyond ASCII.
const trickyText = "a<b>&c \b\f\r \u2028\u2029 \x00\x1f\x7f \xff\xfe bad \xe2\x82 \"q\" \\ é 𝄞 \t\n"

// TestAppendString: every byte, at every place in a string, and invalid
// and separator sequences are quoted as encoding/json quotes them.
func TestAppendString(t *testing.T) {
	var cases []string
	for b := range 256 {
		for p := range 17 {
			s := []byte(strings.Repeat("a", 17))
			s[p] = byte(b)
			cases = append(cases, string(s))
		}
	}
	cases = append(cases, "", "\u2028\u2029", strings.Repeat("é\u2028x", 9), "\xe2\x80", "abcdefg\xe2\x80\xa8", strings.Repeat(trickyText, 3))
	for _, s := range cases {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("AppendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
}
