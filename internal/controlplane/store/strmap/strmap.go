// Package strmap is the Go type of the schema's string→string JSON object
// columns (default_env, metadata): a nil Map is stored as {}, never as NULL.
package strmap

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
)

// Map is a JSON object of strings. Map literals and map[string]string values
// are assignable to it.
type Map map[string]string

// Value encodes m as a JSON object; nil is the empty object.
func (m Map) Value() (driver.Value, error) {
	if m == nil {
		return "{}", nil
	}
	b, err := json.Marshal(map[string]string(m))
	if err != nil {
		return nil, fmt.Errorf("encode string map: %w", err)
	}
	return string(b), nil
}
