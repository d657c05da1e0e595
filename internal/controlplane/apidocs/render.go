package apidocs

import (
	"fmt"
	"html"
	"html/template"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// section is one tag of the page with its operations.
type section struct {
	Tag string
	ID  string
	Doc string
	Ops []pageOp
}

type pageOp struct {
	Path string
	Op   *operation
}

type pageData struct {
	Spec     *spec
	Sections []section
	Count    int
}

func render(w io.Writer, s *spec) error {
	data := pageData{Spec: s}
	index := map[string]int{}
	for _, t := range s.Tags {
		index[t.Name] = len(data.Sections)
		data.Sections = append(data.Sections, section{Tag: t.Name, ID: "tag-" + slug(t.Name), Doc: t.Description})
	}
	for _, p := range s.Paths {
		for _, op := range p.Value.operations() {
			tagName := "Other"
			if len(op.Tags) > 0 {
				tagName = op.Tags[0]
			}
			i, ok := index[tagName]
			if !ok {
				i = len(data.Sections)
				index[tagName] = i
				data.Sections = append(data.Sections, section{Tag: tagName, ID: "tag-" + slug(tagName)})
			}
			data.Sections[i].Ops = append(data.Sections[i].Ops, pageOp{Path: p.Name, Op: op})
			data.Count++
		}
	}
	r := renderer{s}
	t, err := template.New("page").Funcs(template.FuncMap{
		"text":     formatText,
		"auth":     r.auth,
		"opID":     opID,
		"lower":    strings.ToLower,
		"param":    s.parameter,
		"response": s.response,
		"schema":   r.schemaType,
		"props":    r.properties,
		"ws":       wsMessages,
	}).Parse(pageTemplate)
	if err != nil {
		return err
	}
	return t.Execute(w, data)
}

type renderer struct{ s *spec }

// auth renders an operation's authentication kind and the credentials it accepts.
func (r renderer) auth(op *operation) template.HTML {
	var b strings.Builder
	kind := op.Auth
	if kind == "" {
		kind = "?"
	}
	fmt.Fprintf(&b, `<span class="auth auth-%s">%s</span>`, slug(kind), html.EscapeString(kind))
	var creds []string
	if op.Security != nil {
		for _, req := range *op.Security {
			if len(req) == 0 {
				if op.WebSocket {
					creds = append(creds, "first message {\"type\":\"auth\",\"token\":…}")
				} else {
					creds = append(creds, "anonymous")
				}
				continue
			}
			for name := range req {
				creds = append(creds, r.credential(name))
			}
		}
	}
	if len(creds) > 0 {
		fmt.Fprintf(&b, ` <span class="creds">%s</span>`, html.EscapeString(strings.Join(creds, " or ")))
	}
	return template.HTML(b.String())
}

func (r renderer) credential(scheme string) string {
	for _, ss := range r.s.Components.SecuritySchemes {
		if ss.Name != scheme {
			continue
		}
		switch {
		case ss.Value.Type == "http" && ss.Value.Scheme == "bearer":
			return "Authorization: Bearer <" + ss.Value.BearerFormat + ">"
		case ss.Value.Type == "apiKey":
			return ss.Value.Name + " " + ss.Value.In
		}
	}
	return scheme
}

// schemaType renders a compact type expression with links to component schemas.
func (r renderer) schemaType(s *schema) template.HTML {
	if s == nil {
		return ""
	}
	if name, ok := strings.CutPrefix(s.Ref, refSchemas); ok {
		return schemaLink(name)
	}
	var b strings.Builder
	switch {
	case s.Type == "array":
		b.WriteString("array of ")
		b.WriteString(string(r.schemaType(s.Items)))
	case s.Type == "object" && s.AdditionalProperties.Kind != 0 && len(s.Properties) == 0:
		b.WriteString("map of ")
		var inner schema
		if s.AdditionalProperties.Kind == yaml.MappingNode && s.AdditionalProperties.Decode(&inner) == nil {
			b.WriteString(string(r.schemaType(&inner)))
		} else {
			b.WriteString("any")
		}
	case s.Type == "":
		b.WriteString("any")
	default:
		b.WriteString(html.EscapeString(s.Type))
	}
	if s.Format != "" {
		fmt.Fprintf(&b, " <span class=fmt>(%s)</span>", html.EscapeString(s.Format))
	}
	return template.HTML(b.String())
}

// constraints describes enum, default, pattern and bounds of s.
func constraints(s *schema) string {
	if s == nil {
		return ""
	}
	var parts []string
	if len(s.Enum) > 0 {
		parts = append(parts, "one of: "+strings.Join(s.Enum, ", "))
	}
	if s.Default.Kind != 0 {
		parts = append(parts, "default: "+nodeText(&s.Default))
	}
	if s.Pattern != "" {
		parts = append(parts, "pattern: "+s.Pattern)
	}
	bound := func(name string, v *int) {
		if v != nil {
			parts = append(parts, name+": "+strconv.Itoa(*v))
		}
	}
	bound("min length", s.MinLength)
	bound("max length", s.MaxLength)
	bound("max items", s.MaxItems)
	if s.Minimum != nil {
		parts = append(parts, "minimum: "+strconv.FormatFloat(*s.Minimum, 'g', -1, 64))
	}
	if s.Maximum != nil {
		parts = append(parts, "maximum: "+strconv.FormatFloat(*s.Maximum, 'g', -1, 64))
	}
	if s.Example.Kind != 0 {
		parts = append(parts, "example: "+nodeText(&s.Example))
	}
	return strings.Join(parts, "; ")
}

// properties renders s's description, constraints and (for objects, recursively) a property table.
// A $ref schema renders as nothing: its definition is in the Schemas section.
func (r renderer) properties(s *schema) template.HTML {
	if s == nil || s.Ref != "" {
		return ""
	}
	var b strings.Builder
	r.writeDetail(&b, s, 0)
	return template.HTML(b.String())
}

func (r renderer) writeDetail(b *strings.Builder, s *schema, depth int) {
	if s.Description != "" {
		fmt.Fprintf(b, `<div class="desc">%s</div>`, formatText(s.Description))
	}
	if c := constraints(s); c != "" {
		fmt.Fprintf(b, `<div class="cons">%s</div>`, html.EscapeString(c))
	}
	target := s
	if s.Type == "array" && s.Items != nil && s.Items.Ref == "" && len(s.Items.Properties) > 0 {
		target = s.Items
	}
	if len(target.Properties) == 0 || depth > 4 {
		return
	}
	required := map[string]bool{}
	for _, n := range target.Required {
		required[n] = true
	}
	b.WriteString(`<table class="props"><tr><th>field</th><th>type</th><th>notes</th></tr>`)
	for _, p := range target.Properties {
		name := html.EscapeString(p.Name)
		if required[p.Name] {
			name = "<b>" + name + "</b>"
		} else {
			name += "<span class=opt>?</span>"
		}
		fmt.Fprintf(b, `<tr><td><code>%s</code></td><td>%s</td><td>`, name, r.schemaType(p.Value))
		if p.Value != nil && p.Value.Ref == "" {
			r.writeDetail(b, p.Value, depth+1)
		}
		b.WriteString("</td></tr>")
	}
	b.WriteString("</table>")
}

func schemaLink(name string) template.HTML {
	n := html.EscapeString(name)
	return template.HTML(`<a class="schema" href="#schema-` + n + `">` + n + `</a>`)
}

// formatText escapes a description, keeps its line breaks (CSS pre-wrap) and renders `code` spans.
func formatText(s string) template.HTML {
	s = strings.TrimRight(s, "\n")
	parts := strings.Split(s, "`")
	var b strings.Builder
	for i, p := range parts {
		if i%2 == 1 && i < len(parts)-1 {
			b.WriteString("<code>" + html.EscapeString(p) + "</code>")
			continue
		}
		if i%2 == 1 { // unbalanced backtick: keep it
			b.WriteString("`")
		}
		b.WriteString(html.EscapeString(p))
	}
	return template.HTML(b.String())
}

func nodeText(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return n.Value
	}
	out, err := yaml.Marshal(n)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func opID(op pageOp) string {
	if op.Op.OperationID != "" {
		return "op-" + op.Op.OperationID
	}
	return "op-" + slug(op.Op.Method+" "+op.Path)
}

// wsMessages links the message schemas of a WebSocket operation (x-websocket-messages).
func wsMessages(m map[string]string) template.HTML {
	var parts []string
	for _, dir := range []struct{ key, label string }{{"client", "client → server"}, {"server", "server → client"}} {
		if name, ok := m[dir.key]; ok {
			parts = append(parts, dir.label+": "+string(schemaLink(name)))
		}
	}
	return template.HTML(strings.Join(parts, "; "))
}

// slug turns s into an HTML id fragment.
func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

const pageTemplate = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Spec.Info.Title}}</title>
<style>
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
main{max-width:1100px;margin:0 auto;padding:24px 28px 80px}
nav{background:#fff;border:1px solid #e3e6ea;border-radius:8px;padding:12px 18px;margin:18px 0}
nav ul{columns:3;margin:0;padding-left:18px}
h1{margin:0 0 4px}h2{margin-top:42px;border-bottom:2px solid #e3e6ea;padding-bottom:4px}
a{color:#2257c5;text-decoration:none}a:hover{text-decoration:underline}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eef1f5;padding:1px 4px;border-radius:3px}
.desc{white-space:pre-wrap;margin:4px 0}
.op{background:#fff;border:1px solid #e3e6ea;border-radius:8px;margin:14px 0;padding:10px 16px}
.op h3{margin:2px 0 6px;font-size:16px;font-weight:600;display:flex;flex-wrap:wrap;gap:8px;align-items:center}
.path{font:600 14px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.m{font:700 12px ui-monospace,monospace;color:#fff;border-radius:4px;padding:2px 7px;min-width:52px;text-align:center}
.m-get{background:#2f7d4f}.m-post{background:#2257c5}.m-put{background:#8a5a00}.m-patch{background:#7a4fb5}.m-delete{background:#b3302b}
.summary{font-weight:400;color:#4a5365}
.auth{font:700 11px ui-monospace,monospace;border:1px solid #c9ced6;border-radius:10px;padding:1px 7px;background:#f4f6f8}
.auth-none{color:#6b7280}.auth-admin{color:#b3302b;border-color:#e6b3b1}.auth-host{color:#8a5a00}
.ws{font:700 11px ui-monospace,monospace;color:#fff;background:#0f766e;border-radius:10px;padding:1px 7px}
.creds{color:#6b7280;font-size:13px}
table{border-collapse:collapse;width:100%;margin:6px 0;font-size:14px}
th,td{border:1px solid #e3e6ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f6f8;font-weight:600}
table.props table.props{font-size:13px}
.label{font-weight:600;margin-top:8px}
.opt{color:#9aa1ad}.fmt{color:#6b7280}.cons{color:#6b7280;font-size:13px}
.code{font:600 13px ui-monospace,monospace}
</style>
</head>
<body>
<main>
<h1>{{.Spec.Info.Title}}</h1>
<div>Version {{.Spec.Info.Version}} · OpenAPI {{.Spec.OpenAPI}} · {{.Count}} operations · source: <a href="/openapi.yaml">/openapi.yaml</a></div>
<div class="desc">{{text .Spec.Info.Description}}</div>

<nav>
<ul>
<li><a href="#auth">Authentication</a></li>
{{range .Sections}}<li><a href="#{{.ID}}">{{.Tag}}</a> ({{len .Ops}})</li>
{{end}}<li><a href="#schemas">Schemas</a></li>
</ul>
</nav>

<h2 id="auth">Authentication</h2>
<table>
<tr><th>scheme</th><th>credential</th><th>notes</th></tr>
{{range .Spec.Components.SecuritySchemes}}<tr><td><code>{{.Name}}</code></td><td>{{if eq .Value.Type "http"}}Authorization: {{.Value.Scheme}} ({{.Value.BearerFormat}}){{else}}{{.Value.Name}} ({{.Value.In}}){{end}}</td><td><div class="desc">{{text .Value.Description}}</div></td></tr>
{{end}}</table>
<p>Each operation shows its kind: <span class="auth auth-none">none</span> public,
<span class="auth auth-jwt">JWT</span> user JWT,
<span class="auth auth-key-jwt">KEY|JWT</span> API key or user JWT,
<span class="auth auth-admin">ADMIN</span> JWT of a platform admin,
<span class="auth auth-host">HOST</span> host token. WebSocket routes also accept
<code>{"type":"auth","token":"…"}</code> as the first message when no header is sent.</p>

{{range .Sections}}
<h2 id="{{.ID}}">{{.Tag}}</h2>
{{if .Doc}}<div class="desc">{{text .Doc}}</div>{{end}}
{{range .Ops}}{{$path := .Path}}
<div class="op" id="{{opID .}}">{{with .Op}}
<h3><span class="m m-{{lower .Method}}">{{.Method}}</span><span class="path">{{$path}}</span>{{if .WebSocket}}<span class="ws">WebSocket</span>{{end}}<span class="summary">{{.Summary}}</span></h3>
<div>{{auth .}}</div>
{{if .Description}}<div class="desc">{{text .Description}}</div>{{end}}
{{if .WSMessages}}<div class="label">Messages</div>
<div>{{ws .WSMessages}}</div>{{end}}
{{if .Parameters}}<div class="label">Parameters</div>
<table><tr><th>name</th><th>in</th><th>type</th><th>notes</th></tr>
{{range .Parameters}}{{with param .}}<tr><td><code>{{if .Required}}<b>{{.Name}}</b>{{else}}{{.Name}}<span class="opt">?</span>{{end}}</code></td><td>{{.In}}</td><td>{{schema .Schema}}</td><td>{{if .Description}}<div class="desc">{{text .Description}}</div>{{end}}{{props .Schema}}</td></tr>
{{end}}{{end}}</table>{{end}}
{{with .RequestBody}}<div class="label">Request body{{if not .Required}} (optional){{end}}</div>
<table><tr><th>content type</th><th>schema</th></tr>
{{range .Content}}<tr><td><code>{{.Name}}</code></td><td>{{schema .Value.Schema}}{{props .Value.Schema}}</td></tr>
{{end}}</table>{{end}}
<div class="label">Responses</div>
<table><tr><th>status</th><th>description</th><th>body</th></tr>
{{range .Responses}}{{$code := .Name}}{{with response .Value}}<tr><td class="code">{{$code}}</td><td><div class="desc">{{text .Description}}</div></td><td>{{range .Content}}<code>{{.Name}}</code> {{schema .Value.Schema}}{{props .Value.Schema}}<br>{{end}}</td></tr>
{{end}}{{end}}</table>
{{end}}</div>
{{end}}
{{end}}

<h2 id="schemas">Schemas</h2>
{{range .Spec.Components.Schemas}}
<div class="op" id="schema-{{.Name}}">
<h3><span class="path">{{.Name}}</span><span class="summary">{{schema .Value}}</span></h3>
{{props .Value}}
</div>
{{end}}
</main>
</body>
</html>
`
