package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wrenn/wrenn/internal/cli/apiclient"
)

// host is the host object (docs/api.md).
type host struct {
	ID              string     `json:"id"`
	Type            string     `json:"type"`
	TeamID          string     `json:"team_id"`
	Arch            string     `json:"arch"`
	CPUCores        int        `json:"cpu_cores"`
	MemoryMB        int        `json:"memory_mb"`
	Address         string     `json:"address"`
	Status          string     `json:"status"`
	LastHeartbeatAt *time.Time `json:"last_heartbeat_at"`
}

func (a *app) hostCommand() *cobra.Command {
	list := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List hosts (admins: all; others: their team's BYOC hosts)",
		Args:    args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var hs []host
			raw, err := c.CallInto(cmd.Context(), http.MethodGet, "/v1/hosts", apiclient.AuthUser, nil, &hs)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.stdout, raw)
			}
			t := newTable(a.stdout, "ID", "TYPE", "STATUS", "ADDRESS", "ARCH", "CPUS", "MEMORY", "HEARTBEAT")
			for _, h := range hs {
				cpus, mem := "-", "-"
				if h.CPUCores > 0 {
					cpus = strconv.Itoa(h.CPUCores)
				}
				if h.MemoryMB > 0 {
					mem = fmt.Sprintf("%d MiB", h.MemoryMB)
				}
				t.row(h.ID, h.Type, h.Status, orDash(h.Address), orDash(h.Arch), cpus, mem, ago(h.LastHeartbeatAt))
			}
			return t.flush()
		},
	}

	var hostType, team string
	create := &cobra.Command{
		Use:   "create [--type regular|byoc] [--team TEAM_ID]",
		Short: "Create a host and print its id and one-time registration token",
		Long: `Create a host and print its id and its registration token (single use, valid 1 hour). Start the
agent with: wrenn-agent -control-plane <URL> -registration-token <TOKEN>.
regular hosts (the platform's) need a platform admin; byoc hosts belong to a team (--team).`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hostType != "regular" && hostType != "byoc" {
				return usagef("--type %q: want regular or byoc", hostType)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			req := map[string]string{"type": hostType}
			if team != "" {
				req["team_id"] = team
			}
			var res struct {
				Host              host   `json:"host"`
				RegistrationToken string `json:"registration_token"`
			}
			raw, err := c.CallInto(cmd.Context(), http.MethodPost, "/v1/hosts", apiclient.AuthUser, req, &res)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.stdout, raw)
			}
			return fields(a.stdout, "ID", res.Host.ID, "Registration token", res.RegistrationToken)
		},
	}
	create.Flags().StringVar(&hostType, "type", "regular", "regular (platform) or byoc (a team's own)")
	create.Flags().StringVar(&team, "team", "", "owner team of a byoc host (team-…)")

	var force bool
	remove := &cobra.Command{
		Use:     "rm [--force] ID",
		Aliases: []string{"delete"},
		Short:   "Delete a host (--force destroys its capsules)",
		Args:    args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			path := "/v1/hosts/" + url.PathEscape(argv[0])
			if force {
				path += "?force=true"
			}
			if _, err := c.Call(cmd.Context(), http.MethodDelete, path, apiclient.AuthUser, nil); err != nil {
				var ae *apiclient.APIError
				if errors.As(err, &ae) && ae.Code == "has_active_capsules" {
					return fmt.Errorf("host %s has active capsules (%s): destroy them first or use --force",
						argv[0], strings.Join(ae.CapsuleIDs, ", "))
				}
				return err
			}
			if a.json {
				return printValue(a.stdout, map[string]string{"id": argv[0]})
			}
			return nil
		},
	}
	remove.Flags().BoolVar(&force, "force", false, "also destroy the host's active capsules")

	return group("host", "List, create and delete hosts (needs a user login)", []string{"hosts"}, list, create, remove)
}
