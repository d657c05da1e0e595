package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/wrenn/wrenn/internal/cli/apiclient"
)

// template is the template object (docs/api.md).
type template struct {
	Name      string     `json:"name"`
	Type      string     `json:"type"`
	VCPUs     *int       `json:"vcpus"`
	MemoryMB  *int       `json:"memory_mb"`
	SizeBytes int64      `json:"size_bytes"`
	CreatedAt *time.Time `json:"created_at"`
	Platform  bool       `json:"platform"`
}

func (a *app) snapshotCommand() *cobra.Command {
	var (
		name      string
		overwrite bool
	)
	cmd := &cobra.Command{
		Use:   "snapshot [--name N] [--overwrite] ID",
		Short: "Capture a capsule as a template and print the template's name",
		Long: `Capture a capsule (memory, CPU state and disk) as a snapshot template and print its name
(default template-<8 hex>). A running capsule is paused first and stays paused: resume it to go on.
Capsules created from the template continue from the captured state.`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req := map[string]string{"capsule_id": argv[0]}
			if name != "" {
				req["name"] = name
			}
			path := "/v1/snapshots"
			if overwrite {
				path += "?overwrite=true"
			}
			var t template
			raw, err := c.CallInto(cmd.Context(), http.MethodPost, path, apiclient.AuthKey, req, &t)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.stdout, raw)
			}
			_, err = fmt.Fprintln(a.stdout, t.Name)
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "template name (default template-<8 hex>)")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace the team's template of that name")
	return cmd
}

func (a *app) templateCommand() *cobra.Command {
	list := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the templates capsules can be created from (the team's and the platform's)",
		Args:    args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var ts []template
			raw, err := c.CallInto(cmd.Context(), http.MethodGet, "/v1/snapshots", apiclient.AuthKey, nil, &ts)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.stdout, raw)
			}
			t := newTable(a.stdout, "NAME", "TYPE", "VCPUS", "MEMORY", "SIZE", "PLATFORM", "CREATED")
			for _, tp := range ts {
				vcpus, mem := "-", "-"
				if tp.VCPUs != nil {
					vcpus = strconv.Itoa(*tp.VCPUs)
				}
				if tp.MemoryMB != nil {
					mem = fmt.Sprintf("%d MiB", *tp.MemoryMB)
				}
				t.row(tp.Name, tp.Type, vcpus, mem, bytesize(tp.SizeBytes), strconv.FormatBool(tp.Platform), ago(tp.CreatedAt))
			}
			return t.flush()
		},
	}
	remove := &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"delete"},
		Short:   "Delete a team template (capsules created from it keep working)",
		Args:    args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Call(cmd.Context(), http.MethodDelete, "/v1/snapshots/"+url.PathEscape(argv[0]), apiclient.AuthKey, nil); err != nil {
				return err
			}
			if a.json {
				return printValue(a.stdout, map[string]string{"name": argv[0]})
			}
			return nil
		},
	}
	return group("template", "List, delete and build templates", []string{"templates"}, list, remove, a.buildCommand(), a.buildsCommand())
}
