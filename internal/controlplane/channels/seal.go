package channels

import (
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/seal"
)

// sealer encrypts channel configs (docs/security.md). The channel id is the additional data: a sealed
// config copied to another channel row does not open.
type sealer struct{ box *seal.Box }

func newSealer(key []byte) (*sealer, error) {
	box, err := seal.New(key)
	if err != nil {
		return nil, fmt.Errorf("channels: Config.Secret: %w", err)
	}
	return &sealer{box: box}, nil
}

// seal returns cfg as JSON, sealed.
func (s *sealer) seal(channel uuid.UUID, cfg map[string]string) ([]byte, error) {
	plain, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode channel config: %w", err)
	}
	out, err := s.box.Seal(channel[:], plain)
	if err != nil {
		return nil, fmt.Errorf("channel config: %w", err)
	}
	return out, nil
}

// open reverses seal.
func (s *sealer) open(channel uuid.UUID, sealed []byte) (map[string]string, error) {
	plain, err := s.box.Open(channel[:], sealed)
	if err != nil {
		return nil, fmt.Errorf("open channel config: %w", err)
	}
	var cfg map[string]string
	if err := json.Unmarshal(plain, &cfg); err != nil {
		return nil, fmt.Errorf("decode channel config: %w", err)
	}
	return cfg, nil
}
