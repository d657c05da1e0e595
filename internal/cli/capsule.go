package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wrenn/wrenn/internal/cli/apiclient"
)

// capsule is the capsule object (docs/api.md).
type capsule struct {
	ID           string            `json:"id"`
	Status       string            `json:"status"`
	Template     string            `json:"template"`
	VCPUs        int               `json:"vcpus"`
	MemoryMB     int               `json:"memory_mb"`
	TimeoutSec   int               `json:"timeout_sec"`
	HostID       string            `json:"host_id"`
	HostIP       string            `json:"host_ip"`
	CreatedAt    *time.Time        `json:"created_at"`
	StartedAt    *time.Time        `json:"started_at"`
	LastActiveAt *time.Time        `json:"last_active_at"`
	Metadata     map[string]string `json:"metadata"`
}

// capsulePath is the API path of a capsule (the id escaped: it comes from the user).
func capsulePath(id string, sub ...string) string {
	p := "/v1/capsules/" + url.PathEscape(id)
	for _, s := range sub {
		p += "/" + s
	}
	return p
}

func (a *app) capsuleCommand() *cobra.Command {
	return group("capsule", "Create, inspect, run commands in and destroy capsules", []string{"capsules"},
		a.capsuleCreate(),
		a.capsuleList(),
		a.capsuleGet(),
		a.execCommand(),
		a.capsuleLifecycle("pause", "Pause a running capsule (memory and disk are kept; resume continues it)"),
		a.capsuleLifecycle("resume", "Resume a paused capsule"),
		a.capsuleFork(),
		a.capsuleRemove(),
		a.shellCommand(),
	)
}

func (a *app) capsuleCreate() *cobra.Command {
	var (
		template   string
		vcpus      int
		memory     int
		timeout    int
		noInternet bool
		secure     bool
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a capsule and print its id",
		Long: `Create a capsule and print its id (the capsule object with --json).
Without --template the platform's default template ("base") is used; a snapshot template brings its
own vCPUs and memory.`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req := map[string]any{}
			f := cmd.Flags()
			if template != "" {
				req["template"] = template
			}
			if f.Changed("vcpus") {
				req["vcpus"] = vcpus
			}
			if f.Changed("memory") {
				req["memory_mb"] = memory
			}
			if f.Changed("timeout") {
				req["timeout_sec"] = timeout
			}
			if noInternet {
				req["allow_internet"] = false
			}
			if secure {
				req["secure"] = true
			}
			var out capsule
			raw, err := c.CallInto(cmd.Context(), http.MethodPost, "/v1/capsules", apiclient.AuthKey, req, &out)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.stdout, raw)
			}
			_, err = fmt.Fprintln(a.stdout, out.ID)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&template, "template", "", `template name (default: the platform's "base")`)
	f.IntVar(&vcpus, "vcpus", 1, "virtual CPUs")
	f.IntVar(&memory, "memory", 512, "memory in MiB")
	f.IntVar(&timeout, "timeout", 0, "pause the capsule after this many seconds without activity (0 = never)")
	f.BoolVar(&noInternet, "no-internet", false, "block all egress traffic")
	f.BoolVar(&secure, "secure", false, "require the capsule's traffic access token (X-Wrenn-Traffic-Token) on every proxied port (see --json)")
	return cmd
}

func (a *app) capsuleList() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the team's capsules (destroyed ones excluded)",
		Args:    args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var caps []capsule
			raw, err := c.CallInto(cmd.Context(), http.MethodGet, "/v1/capsules", apiclient.AuthKey, nil, &caps)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.stdout, raw)
			}
			t := newTable(a.stdout, "ID", "STATUS", "TEMPLATE", "VCPUS", "MEMORY", "HOST", "CREATED")
			for _, cp := range caps {
				t.row(cp.ID, cp.Status, cp.Template, strconv.Itoa(cp.VCPUs), fmt.Sprintf("%d MiB", cp.MemoryMB),
					orDash(cp.HostID), ago(cp.CreatedAt))
			}
			return t.flush()
		},
	}
}

func (a *app) capsuleGet() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a capsule",
		Args:  args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var cp capsule
			raw, err := c.CallInto(cmd.Context(), http.MethodGet, capsulePath(argv[0]), apiclient.AuthKey, nil, &cp)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.stdout, raw)
			}
			return printCapsule(a, cp)
		},
	}
}

func printCapsule(a *app, cp capsule) error {
	timeout := "never"
	if cp.TimeoutSec > 0 {
		timeout = fmt.Sprintf("%ds without activity", cp.TimeoutSec)
	}
	keys := make([]string, 0, len(cp.Metadata))
	for k := range cp.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	meta := make([]string, 0, len(keys))
	for _, k := range keys {
		meta = append(meta, k+"="+cp.Metadata[k])
	}
	return fields(a.stdout,
		"ID", cp.ID,
		"Status", cp.Status,
		"Template", cp.Template,
		"vCPUs", strconv.Itoa(cp.VCPUs),
		"Memory", fmt.Sprintf("%d MiB", cp.MemoryMB),
		"Auto-pause", timeout,
		"Host", cp.HostID,
		"Host IP", cp.HostIP,
		"Created", stamp(cp.CreatedAt),
		"Started", stamp(cp.StartedAt),
		"Last active", stamp(cp.LastActiveAt),
		"Metadata", strings.Join(meta, " "),
	)
}

// capsuleLifecycle is pause or resume: POST …/{verb} → the capsule.
func (a *app) capsuleLifecycle(verb, short string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Args:  args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var cp capsule
			raw, err := c.CallInto(cmd.Context(), http.MethodPost, capsulePath(argv[0], verb), apiclient.AuthKey, nil, &cp)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "%s %s\n", cp.ID, cp.Status)
			return err
		},
	}
}

// capsuleFork is POST …/fork: count new capsules continuing from a running one.
func (a *app) capsuleFork() *cobra.Command {
	var count int
	cmd := &cobra.Command{
		Use:   "fork ID",
		Short: "Copy a running capsule (memory, processes, files) into new running capsules",
		Args:  args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if count < 1 || count > 16 {
				return fmt.Errorf("-n must be 1..16")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var cps []capsule
			raw, err := c.CallInto(cmd.Context(), http.MethodPost, capsulePath(argv[0], "fork"), apiclient.AuthKey,
				map[string]int{"count": count}, &cps)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.stdout, raw)
			}
			for _, cp := range cps {
				if _, err := fmt.Fprintf(a.stdout, "%s %s\n", cp.ID, cp.Status); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&count, "count", "n", 1, "how many copies (1..16)")
	return cmd
}

func (a *app) capsuleRemove() *cobra.Command {
	return &cobra.Command{
		Use:     "rm ID [ID...]",
		Aliases: []string{"destroy", "delete"},
		Short:   "Destroy capsules (their processes, files and memory are gone)",
		Args:    args(1, -1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var (
				removed = []string{}
				failed  []string
			)
			for _, id := range argv {
				if _, err := c.Call(cmd.Context(), http.MethodDelete, capsulePath(id), apiclient.AuthKey, nil); err != nil {
					var re *apiclient.ReachError
					if errors.As(err, &re) || cmd.Context().Err() != nil {
						return err
					}
					failed = append(failed, id+": "+err.Error())
					continue
				}
				removed = append(removed, id)
				if !a.json {
					fmt.Fprintln(a.stdout, id)
				}
			}
			if a.json {
				if err := printValue(a.stdout, map[string][]string{"capsule_ids": removed}); err != nil {
					return err
				}
			}
			switch len(failed) {
			case 0:
				return nil
			case 1:
				return errors.New(failed[0])
			default:
				return fmt.Errorf("%d capsules not removed: %s", len(failed), strings.Join(failed, "; "))
			}
		},
	}
}
