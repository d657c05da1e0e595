package platform

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

var activationLink = regexp.MustCompile(`activate\?token=([0-9a-f]{32})`)

// Signup creates an account through the API: signup, activation link from the control plane's log
// (no SMTP configured: mails are logged), activation. It returns the AuthResponse token.
func (p *Platform) Signup(t testing.TB, email, name string) (jwt, teamID string) {
	t.Helper()
	res := cptest.Call(t, p.URL(), "POST", "/v1/auth/signup", cptest.Cred{}, map[string]string{"email": email, "password": "password-" + name, "name": name})
	if res.Status != 201 {
		t.Fatalf("signup: %d %s", res.Status, res.Body)
	}
	var token string
	Eventually(t, 30*time.Second, "activation mail in the log", func() error {
		for _, c := range p.CPs {
			b, _ := os.ReadFile(c.LogPath)
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, email) || strings.Contains(line, strings.ReplaceAll(email, "@", "%40")) {
					if m := activationLink.FindStringSubmatch(line); m != nil {
						token = m[1]
					}
				}
			}
		}
		if token == "" {
			return notYet{}
		}
		return nil
	})
	res = cptest.Call(t, p.URL(), "POST", "/v1/auth/activate", cptest.Cred{}, map[string]string{"token": token})
	if res.Status != 200 {
		t.Fatalf("activate: %d %s", res.Status, res.Body)
	}
	var ar struct {
		Token  string `json:"token"`
		TeamID string `json:"team_id"`
	}
	res.JSON(t, &ar)
	return ar.Token, ar.TeamID
}

type notYet struct{}

func (notYet) Error() string { return "not yet" }

// Capsule is the part of a capsule's JSON the suites look at.
type Capsule struct {
	ID        string `json:"id"`
	SandboxID string `json:"sandbox_id"`
	Status    string `json:"status"`
	HostID    string `json:"host_id"`
	Template  string `json:"template"`
}

// CreateCapsule creates a running 256 MiB capsule from `minimal` through the control plane at base.
func (p *Platform) CreateCapsule(t testing.TB, base string, cred cptest.Cred) Capsule {
	t.Helper()
	res := cptest.Call(t, base, "POST", "/v1/capsules", cred, map[string]any{"template": "minimal", "memory_mb": 256})
	if res.Status != 201 {
		t.Fatalf("create capsule: %d %s", res.Status, res.Body)
	}
	var c Capsule
	res.JSON(t, &c)
	if c.Status != "running" || c.ID == "" || c.SandboxID != c.ID {
		t.Fatalf("created capsule %+v", c)
	}
	return c
}

// GetCapsule reads a capsule with the admin team's key.
func (p *Platform) GetCapsule(t testing.TB, base, id string) Capsule {
	t.Helper()
	res := cptest.Call(t, base, "GET", "/v1/capsules/"+id, cptest.Key(p.Key), nil)
	if res.Status != 200 {
		t.Fatalf("get capsule %s: %d %s", id, res.Status, res.Body)
	}
	var c Capsule
	res.JSON(t, &c)
	return c
}
