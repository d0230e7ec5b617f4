// chart-render - renders a Helm chart the way `helm template` does, without Helm.
//
// Helm is not packaged in Debian 12, but everything Helm's renderer is made of is: Go's
// text/template, sprig v3 (github.com/Masterminds/sprig, the function library Helm
// vendors; Debian ships 3.2.3, of the 3.2 line Helm 3 has long pinned) and sigs.k8s.io/yaml
// (which Helm uses to read values and for toYaml). This program re-creates the part of
// helm.sh/helm/v3/pkg/engine and pkg/chartutil that a chart without subcharts uses:
//
//   - values: the chart's values.yaml, then each -f file merged over the previous ones
//     (Helm's mergeMaps), then coalesced over the chart's defaults (a null in a user
//     file deletes a default, as in chartutil.CoalesceValues). YAML is read through
//     sigs.k8s.io/yaml, so numbers are float64, as in Helm (1234567 prints 1.234567e+06);
//   - the template set: every file under templates/ parsed into one text/template set,
//     named "<chart>/templates/<file>", in Helm's order (deepest paths first, then by
//     name), with missingkey=zero and "<no value>" removed from the output;
//   - functions: sprig's TxtFuncMap minus env and expandenv, plus Helm's include (with
//     its recursion limit), tpl, required, fail, toYaml, fromYaml, fromYamlArray, toJson,
//     fromJson, fromJsonArray, and lookup (always empty, as in `helm template`);
//   - built-in objects: .Values, .Release (Name, Namespace, Service "Helm", IsInstall,
//     IsUpgrade, Revision), .Chart (Chart.yaml's fields), .Template (Name, BasePath),
//     .Capabilities (KubeVersion and APIVersions.Has for built-in API groups);
//   - output: like `helm template`: partials (_*) skipped, each file split into
//     documents on "---", empty documents dropped, every document parsed as YAML (a
//     parse error fails the render, as in Helm), sorted by Helm's install order of
//     kinds, printed as "---\n# Source: <chart>/templates/<file>\n<document>\n".
//
// Not implemented: subcharts and globals, .Files, toToml, --set, schema validation,
// hooks as a separate category, NOTES.txt. A chart that used them fails to parse
// ("function not defined") or renders an empty value, so the tests would notice.
//
//	chart-render -chart DIR [-f values.yaml]... [-name release-name] [-namespace default]
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig" // module sprig/v3; Debian lays it out without /v3
	"sigs.k8s.io/yaml"
)

type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

// chartMetadata mirrors helm.sh/helm/v3/pkg/chart.Metadata, so .Chart.AppVersion etc.
// resolve to the same fields (and to "" when Chart.yaml leaves them out).
type chartMetadata struct {
	Name         string            `json:"name,omitempty"`
	Home         string            `json:"home,omitempty"`
	Sources      []string          `json:"sources,omitempty"`
	Version      string            `json:"version,omitempty"`
	Description  string            `json:"description,omitempty"`
	Keywords     []string          `json:"keywords,omitempty"`
	Maintainers  []interface{}     `json:"maintainers,omitempty"`
	Icon         string            `json:"icon,omitempty"`
	APIVersion   string            `json:"apiVersion,omitempty"`
	Condition    string            `json:"condition,omitempty"`
	Tags         string            `json:"tags,omitempty"`
	AppVersion   string            `json:"appVersion,omitempty"`
	Deprecated   bool              `json:"deprecated,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	KubeVersion  string            `json:"kubeVersion,omitempty"`
	Dependencies []interface{}     `json:"dependencies,omitempty"`
	Type         string            `json:"type,omitempty"`
}

type kubeVersion struct {
	Version, Major, Minor string
}

func (k kubeVersion) String() string     { return k.Version }
func (k kubeVersion) GitVersion() string { return k.Version }

type versionSet []string

func (v versionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

type capabilities struct {
	KubeVersion kubeVersion
	APIVersions versionSet
}

// The API versions a v1.29 cluster serves for the kinds charts commonly use.
var builtinAPIVersions = versionSet{
	"v1", "apps/v1", "batch/v1", "autoscaling/v1", "autoscaling/v2", "policy/v1",
	"networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "storage.k8s.io/v1",
	"apps/v1/Deployment", "v1/ConfigMap", "v1/Service", "v1/Secret",
}

// Helm's releaseutil.InstallOrder.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
	"PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
	"ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
	"CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
	"ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
	"DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
	"APIService",
}

const recursionMaxNums = 1000

func readValues(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	vals := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &vals); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if vals == nil {
		vals = map[string]interface{}{}
	}
	return vals, nil
}

// mergeMaps is Helm's cli/values mergeMaps: b over a, maps merged recursively.
func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if vm, ok := v.(map[string]interface{}); ok {
			if bv, ok := out[k]; ok {
				if bm, ok := bv.(map[string]interface{}); ok {
					out[k] = mergeMaps(bm, vm)
					continue
				}
			}
		}
		out[k] = v
	}
	return out
}

// coalesce is chartutil.coalesceTablesFullKey without merge mode: defaults (src) fill
// in what the user (dst) left out; a user null removes the key.
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	for key, val := range src {
		dv, ok := dst[key]
		switch {
		case ok && dv == nil:
			delete(dst, key)
		case !ok:
			dst[key] = val
		default:
			dm, dIsMap := dv.(map[string]interface{})
			sm, sIsMap := val.(map[string]interface{})
			if dIsMap && sIsMap {
				coalesce(dm, sm)
			} else if dIsMap != sIsMap && val != nil {
				fmt.Fprintf(os.Stderr, "coalesce.go: warning: cannot overwrite table with non table for %s\n", key)
			}
		}
	}
	return dst
}

func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return "" // Helm swallows errors inside templates
	}
	return strings.TrimSuffix(string(data), "\n")
}

func fromYAML(str string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(str), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromYAMLArray(str string) []interface{} {
	a := []interface{}{}
	if err := yaml.Unmarshal([]byte(str), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(str string) map[string]interface{} {
	m := make(map[string]interface{})
	if err := json.Unmarshal([]byte(str), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSONArray(str string) []interface{} {
	a := []interface{}{}
	if err := json.Unmarshal([]byte(str), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

// chartValues stands for chartutil.Values: Helm passes ., .Values and .Template as this
// named map type (nested maps stay plain), so a chart that type-asserts them (sprig's
// dig on .Values) fails here as it fails in Helm.
type chartValues map[string]interface{}

func warnWrap(warn string) string { return "\x1b[1mWARNING\x1b[0m: " + warn }

type engine struct {
	t        *template.Template
	included map[string]int
}

func (e *engine) funcMap() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["fromYamlArray"] = fromYAMLArray
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["fromJsonArray"] = fromJSONArray
	f["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	f["include"] = func(name string, data interface{}) (string, error) {
		var buf strings.Builder
		if e.included[name] > recursionMaxNums {
			return "", fmt.Errorf("rendering template has a nested reference name: %s: unable to execute template", name)
		}
		e.included[name]++
		err := e.t.ExecuteTemplate(&buf, name, data)
		e.included[name]--
		return buf.String(), err
	}
	f["tpl"] = func(text string, vals map[string]interface{}) (string, error) {
		name := "tpl"
		if tm, ok := vals["Template"].(chartValues); ok {
			if n, ok := tm["Name"].(string); ok {
				name = n
			}
		}
		clone, err := e.t.Clone()
		if err != nil {
			return "", err
		}
		if _, err := clone.New(name).Parse(text); err != nil {
			return "", fmt.Errorf("cannot parse template %q: %w", text, err)
		}
		var buf strings.Builder
		if err := clone.ExecuteTemplate(&buf, name, vals); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %w", text, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	f["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(warnWrap(warn))
		}
		if s, ok := val.(string); ok && s == "" {
			return val, errors.New(warnWrap(warn))
		}
		return val, nil
	}
	f["fail"] = func(msg string) (string, error) {
		return "", errors.New(warnWrap(msg))
	}
	return f
}

// sortTemplates is Helm's: more path separators first, then reverse lexical order.
func sortTemplates(names []string) {
	sort.Slice(names, func(i, j int) bool {
		a, b := names[i], names[j]
		ca, cb := strings.Count(a, "/"), strings.Count(b, "/")
		if ca == cb {
			return a > b
		}
		return ca > cb
	})
}

var docSep = regexp.MustCompile(`(?:^|\s*\n)---\s*`)

type manifest struct {
	source, content, kind string
}

func run() error {
	var valueFiles fileList
	chartDir := flag.String("chart", "", "chart directory (holds Chart.yaml)")
	name := flag.String("name", "release-name", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	flag.Var(&valueFiles, "f", "values file (repeatable, later ones win)")
	flag.Parse()
	if *chartDir == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}

	raw, err := os.ReadFile(filepath.Join(*chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	var meta chartMetadata
	if err := yaml.Unmarshal(raw, &meta); err != nil {
		return fmt.Errorf("Chart.yaml: %w", err)
	}

	defaults := map[string]interface{}{}
	if _, err := os.Stat(filepath.Join(*chartDir, "values.yaml")); err == nil {
		if defaults, err = readValues(filepath.Join(*chartDir, "values.yaml")); err != nil {
			return err
		}
	}
	user := map[string]interface{}{}
	for _, f := range valueFiles {
		v, err := readValues(f)
		if err != nil {
			return err
		}
		user = mergeMaps(user, v)
	}
	values := coalesce(user, defaults)

	sources := map[string]string{}
	var names []string
	tdir := filepath.Join(*chartDir, "templates")
	err = filepath.WalkDir(tdir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(*chartDir, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n := path.Join(meta.Name, filepath.ToSlash(rel))
		sources[n] = string(data)
		names = append(names, n)
		return nil
	})
	if err != nil {
		return err
	}
	sortTemplates(names)

	e := &engine{included: map[string]int{}}
	e.t = template.New("gotpl").Option("missingkey=zero")
	e.t.Funcs(e.funcMap())
	for _, n := range names {
		if _, err := e.t.New(n).Parse(sources[n]); err != nil {
			return fmt.Errorf("parse error in %s: %w", n, err)
		}
	}

	top := chartValues{ // the top-level object is a chartutil.Values too
		"Values": chartValues(values),
		"Release": map[string]interface{}{
			"Name": *name, "Namespace": *namespace, "IsUpgrade": false, "IsInstall": true,
			"Revision": 1, "Service": "Helm",
		},
		"Chart": &meta,
		"Capabilities": &capabilities{
			KubeVersion: kubeVersion{Version: "v1.29.0", Major: "1", Minor: "29"},
			APIVersions: builtinAPIVersions,
		},
		"Subcharts": map[string]interface{}{},
	}
	basePath := path.Join(meta.Name, "templates")
	var out []manifest
	sort.Strings(names)
	for _, n := range names {
		if strings.HasPrefix(path.Base(n), "_") || strings.HasSuffix(n, "NOTES.txt") {
			continue
		}
		top["Template"] = chartValues{"Name": n, "BasePath": basePath}
		var buf strings.Builder
		if err := e.t.ExecuteTemplate(&buf, n, top); err != nil {
			return err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(text) == "" {
			continue
		}
		for _, d := range docSep.Split(strings.TrimSpace(text), -1) {
			if d == "" {
				continue
			}
			d = strings.TrimSpace(d)
			var head struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(d), &head); err != nil {
				return fmt.Errorf("YAML parse error on %s: %w", n, err)
			}
			out = append(out, manifest{source: n, content: d, kind: head.Kind})
		}
	}
	rank := map[string]int{}
	for i, k := range installOrder {
		rank[k] = i
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, aok := rank[out[i].kind]
		b, bok := rank[out[j].kind]
		switch {
		case !aok && !bok:
			return out[i].kind < out[j].kind
		case !aok:
			return false
		case !bok:
			return true
		}
		return a < b
	})
	for _, m := range out {
		fmt.Printf("---\n# Source: %s\n%s\n", m.source, m.content)
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
}
