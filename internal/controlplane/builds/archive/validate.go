package archive

import (
	"archive/tar"
	"fmt"
	"io"
	"path"
	"strings"
)

type nodeKind uint8

const (
	kindDir nodeKind = iota + 1
	kindFile
	kindSymlink
)

func (k nodeKind) String() string {
	switch k {
	case kindDir:
		return "directory"
	case kindFile:
		return "file"
	}
	return "symlink"
}

// node is a path of the extracted tree as the entries so far build it; node 0 is the root.
type node struct {
	kind   nodeKind
	parent int
	target string // symlink target as written
	raw    string // symlink entry name, for errors
}

type childKey struct {
	parent int
	name   string
}

// validator holds what the entries so far have built, so that each entry is judged against the tree
// it is extracted into: no entry goes through a symlink or a file, none changes a path's kind, hard links
// name earlier files, and at the end every symlink resolves inside the root.
type validator struct {
	count    int
	expanded int64
	nodes    []node
	children map[childKey]int
	links    []int // symlink nodes, in archive order
	budget   int   // path components left for resolving symlink targets
}

func newValidator() *validator {
	return &validator{nodes: []node{{kind: kindDir}}, children: map[childKey]int{}, budget: resolveBudget}
}

func (v *validator) unsupported(name, kind string) error {
	return &Error{Entry: name, Reason: "unsupported entry type " + kind + " (only regular files, directories, symlinks and hard links)"}
}

func (v *validator) tooBig(name string) error {
	return &Error{Entry: name, Reason: "expanded size exceeds " + sizeText(maxExpanded)}
}

func sizeText(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d bytes", n)
}

// cleanName checks an entry or hard-link path and returns it cleaned; "." is the root.
func cleanName(name string) (string, string) {
	switch {
	case name == "":
		return "", "empty name"
	case strings.HasPrefix(name, "/") || strings.HasPrefix(name, `\`):
		return "", "absolute path"
	case strings.IndexByte(name, 0) >= 0:
		return "", "name contains a NUL byte"
	}
	// Backslashes count as separators here so that a zip written on Windows cannot smuggle "..\".
	for _, part := range strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '\\' }) {
		if part == ".." {
			return "", "path escapes the archive root"
		}
	}
	return path.Clean(name), ""
}

// handle validates e against the tree so far, adds it, and emits it; a regular file's content is read
// (and counted) either way.
func (v *validator) handle(e *entry, emit func(*entry) error) error {
	v.count++
	if v.count > maxEntries {
		return &Error{Reason: fmt.Sprintf("more than %d entries", maxEntries)}
	}
	name, why := cleanName(e.raw)
	if why != "" {
		return &Error{Entry: e.raw, Reason: why}
	}
	e.name = name
	if name == "." {
		if e.typ != tar.TypeDir {
			return &Error{Entry: e.raw, Reason: "only a directory may name the archive root"}
		}
		return nil // the root exists already; its entry carries nothing worth extracting
	}
	if err := v.add(e); err != nil {
		return err
	}
	if e.typ == tar.TypeReg {
		if e.size < 0 || e.size > maxExpanded-v.expanded {
			return v.tooBig(e.raw)
		}
		e.body = &counted{v: v, e: e, r: e.body}
	}
	if emit != nil {
		if err := emit(e); err != nil {
			return err
		}
	}
	if e.typ == tar.TypeReg {
		// Drain what emit left (all of it when only checking) so every byte is counted and read errors show.
		n, err := io.Copy(io.Discard, e.body)
		if err != nil {
			return err
		}
		if emit == nil && n != e.size {
			return &Error{Entry: e.raw, Reason: "content is shorter than its header says"}
		}
	}
	return nil
}

// add places e in the tree.
func (v *validator) add(e *entry) error {
	parts := strings.Split(e.name, "/")
	cur := 0
	for _, p := range parts[:len(parts)-1] {
		next, ok := v.children[childKey{cur, p}]
		switch {
		case !ok:
			next = v.newNode(cur, p, node{kind: kindDir})
		case v.nodes[next].kind == kindSymlink:
			return &Error{Entry: e.raw, Reason: fmt.Sprintf("path passes through the symlink %q", v.nodes[next].raw)}
		case v.nodes[next].kind == kindFile:
			return &Error{Entry: e.raw, Reason: "path passes through a file"}
		}
		cur = next
	}
	kind := kindFile
	switch e.typ {
	case tar.TypeDir:
		kind = kindDir
	case tar.TypeSymlink:
		kind = kindSymlink
		switch {
		case e.link == "":
			return &Error{Entry: e.raw, Reason: "symlink has an empty target"}
		case len(e.link) > maxLinkTarget:
			return &Error{Entry: e.raw, Reason: "symlink target is too long"}
		case strings.IndexByte(e.link, 0) >= 0:
			return &Error{Entry: e.raw, Reason: "symlink target contains a NUL byte"}
		}
	case tar.TypeLink:
		target, why := cleanName(e.link)
		if why == "" && v.lookup(target) != kindFile {
			why = "is not an earlier file in the archive"
		}
		if why != "" {
			return &Error{Entry: e.raw, Reason: fmt.Sprintf("hard link target %q %s", e.link, linkWhy(why))}
		}
		e.link = target
	}
	last := parts[len(parts)-1]
	id, ok := v.children[childKey{cur, last}]
	if !ok {
		id = v.newNode(cur, last, node{kind: kind})
	} else if have := v.nodes[id].kind; have != kind {
		return &Error{Entry: e.raw, Reason: fmt.Sprintf("replaces an earlier %s with a %s", have, kind)}
	}
	if kind == kindSymlink {
		if !ok {
			v.links = append(v.links, id)
		}
		v.nodes[id].target, v.nodes[id].raw = e.link, e.raw
		// Checked now to name the first offender early; checked again in finish, once every link is known.
		if err := v.checkLink(id); err != nil {
			return err
		}
	}
	return nil
}

func linkWhy(why string) string {
	if why == "is not an earlier file in the archive" {
		return why
	}
	return "resolves outside the archive root (" + why + ")"
}

func (v *validator) newNode(parent int, name string, n node) int {
	n.parent = parent
	v.nodes = append(v.nodes, n)
	id := len(v.nodes) - 1
	v.children[childKey{parent, name}] = id
	return id
}

// lookup is the kind at a cleaned path, without following symlinks; 0 when absent or below a non-directory.
func (v *validator) lookup(p string) nodeKind {
	if p == "." {
		return kindDir
	}
	cur := 0
	for _, part := range strings.Split(p, "/") {
		if v.nodes[cur].kind != kindDir {
			return 0
		}
		next, ok := v.children[childKey{cur, part}]
		if !ok {
			return 0
		}
		cur = next
	}
	return v.nodes[cur].kind
}

// finish re-checks every symlink against the complete tree: a later link can change where an earlier
// one leads.
func (v *validator) finish() error {
	for _, id := range v.links {
		if err := v.checkLink(id); err != nil {
			return err
		}
	}
	return nil
}

// checkLink resolves symlink node id the way the kernel would in the extracted tree and fails when the
// resolution leaves the root. Paths the archive does not create are followed by depth alone.
func (v *validator) checkLink(id int) error {
	n := v.nodes[id]
	fail := func(why string) error {
		return &Error{Entry: n.raw, Reason: fmt.Sprintf("symlink target %q %s", n.target, why)}
	}
	var stack []int // nodes from the root down to the current directory
	for p := n.parent; p != 0; p = v.nodes[p].parent {
		stack = append(stack, p)
	}
	for i, j := 0, len(stack)-1; i < j; i, j = i+1, j-1 {
		stack[i], stack[j] = stack[j], stack[i]
	}
	queue := []string{n.target}
	ghost, hops := 0, 0 // ghost: depth below the last node the archive creates
	for len(queue) > 0 {
		comp := queue[0]
		queue = queue[1:]
		if strings.HasPrefix(comp, "/") {
			return fail("resolves outside the archive root")
		}
		if strings.Contains(comp, "/") {
			queue = append(strings.Split(comp, "/"), queue...)
			continue
		}
		if v.budget--; v.budget < 0 {
			return fail("takes too long to resolve")
		}
		switch {
		case comp == "" || comp == ".":
		case comp == "..":
			switch {
			case ghost > 0:
				ghost--
			case len(stack) == 0:
				return fail("resolves outside the archive root")
			default:
				stack = stack[:len(stack)-1]
			}
		case ghost > 0:
			ghost++
		default:
			cur := 0
			if len(stack) > 0 {
				cur = stack[len(stack)-1]
			}
			next, ok := v.children[childKey{cur, comp}]
			if !ok {
				ghost = 1
				continue
			}
			if v.nodes[next].kind != kindSymlink {
				stack = append(stack, next)
				continue
			}
			if hops++; hops > maxHops {
				return fail("has too many levels of symbolic links")
			}
			queue = append([]string{v.nodes[next].target}, queue...)
		}
	}
	return nil
}

// counted counts a regular file's content against the expansion limit as it is read.
type counted struct {
	v *validator
	e *entry
	r io.Reader
}

func (c *counted) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.v.expanded += int64(n)
	if c.v.expanded > maxExpanded {
		return n, c.v.tooBig(c.e.raw)
	}
	if err != nil && err != io.EOF {
		err = invalid(c.e.raw, "cannot read content", err)
	}
	return n, err
}
