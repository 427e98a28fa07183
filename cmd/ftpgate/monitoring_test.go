package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"
)

// monitoringDir holds the alert rules and the Grafana dashboard.
const monitoringDir = "../../deploy/monitoring"

func TestPromtoolCheckRules(t *testing.T) {
	tool := promtool(t)
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(tool, args...)
		cmd.Dir = monitoringDir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s: %s", strings.Join(args, " "), strings.Join(strings.Fields(string(out)), " "))
	}
}

// exportedNames is every series name a scrape of the wired registry shows:
// families, and a histogram's _bucket, _sum and _count.
func exportedNames(t *testing.T) (names map[string]bool, ftpgateFamilies []string) {
	t.Helper()
	m := wiredMetrics(t)
	for _, ev := range syntheticEvents() {
		m.Observe(ev)
	}
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names = map[string]bool{"up": true} // Prometheus's own per-target series
	for _, f := range fams {
		n := f.GetName()
		names[n] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		}
		if strings.HasPrefix(n, "ftpgate_") {
			ftpgateFamilies = append(ftpgateFamilies, n)
		}
	}
	return names, ftpgateFamilies
}

// metricRef finds the metric names in a PromQL expression: ours, the Go
// and process collectors', and up.
var metricRef = regexp.MustCompile(`\b(?:ftpgate|go|process)_[a-zA-Z0-9_]+|\bup\b`)

// dashboardExprs returns every PromQL expression of the dashboard: panel
// targets and template variable queries.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(monitoringDir, "ftpgate-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			GridPos struct{ X, W int }
			Targets []struct {
				Expr  string `json:"expr"`
				RefID string `json:"refId"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard lacks a title, uid or panels")
	}
	var exprs []string
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q is wider than the grid", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" {
				t.Errorf("panel %q has a target without expr or refId", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	vars := map[string]bool{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
		if q, ok := v.Query.(map[string]any); ok && v.Type == "query" {
			exprs = append(exprs, q["query"].(string))
		}
	}
	for _, need := range []string{"datasource", "job", "instance"} {
		if !vars[need] {
			t.Errorf("dashboard has no $%s variable", need)
		}
	}
	return exprs
}

// ruleExprs returns the expressions of alerts.yaml.
func ruleExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(monitoringDir, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	var exprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	if len(exprs) == 0 {
		t.Fatal("alerts.yaml has no rules")
	}
	return exprs
}

// TestMonitoringUsesExportedMetrics: the dashboard and the alert rules
// name only series that ftpgate exports, and the dashboard shows every
// ftpgate metric.
func TestMonitoringUsesExportedMetrics(t *testing.T) {
	names, families := exportedNames(t)
	used := map[string]bool{}
	for file, exprs := range map[string][]string{"ftpgate-dashboard.json": dashboardExprs(t), "alerts.yaml": ruleExprs(t)} {
		for _, e := range exprs {
			refs := metricRef.FindAllString(e, -1)
			if len(refs) == 0 {
				t.Errorf("%s: expression names no metric: %s", file, e)
			}
			for _, r := range refs {
				if !names[r] {
					t.Errorf("%s: %s is not a metric ftpgate exports (in %s)", file, r, e)
				}
				if file == "ftpgate-dashboard.json" {
					used[r] = true
					used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(r, "_bucket"), "_count"), "_sum")] = true
				}
			}
		}
	}
	for _, f := range families {
		if !used[f] {
			t.Errorf("the dashboard does not show %s", f)
		}
	}
	if !slices.Contains(families, "ftpgate_transfers_total") {
		t.Fatalf("registry families %v lack ftpgate_transfers_total", families)
	}
}
