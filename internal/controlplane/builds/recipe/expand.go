package recipe

import "strings"

// Expand expands $VAR, ${VAR} and $$ (→ $) against env; an unset variable expands to nothing. No shell
// runs. A '$' that starts none of these forms (such as "$1", "${}" or a trailing '$') stays as written.
func Expand(s string, env map[string]string) string {
	if strings.IndexByte(s, '$') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			i++
			continue
		}
		switch c := s[i+1]; {
		case c == '$':
			b.WriteByte('$')
			i += 2
		case c == '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 || !envName.MatchString(s[i+2:i+2+end]) {
				b.WriteByte('$')
				i++
				continue
			}
			b.WriteString(env[s[i+2:i+2+end]])
			i += 3 + end
		case nameStart(c):
			j := i + 2
			for j < len(s) && (nameStart(s[j]) || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			b.WriteString(env[s[i+1:j]])
			i = j
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String()
}

func nameStart(c byte) bool {
	return c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}
