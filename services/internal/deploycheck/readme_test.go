package deploycheck

// The README's configuration table is what operators read to configure a deployment; a
// variable a binary reads but the table omits is a setting nobody knows about. This test holds
// the table to the binaries' own -check-config lists, in both directions.

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmeEnv is enough for every binary's -check-config to accept the environment.
var readmeEnv = merge(requiredEnv, map[string]string{
	"DATABASE_URL": "postgres://deploycheck@localhost:5432/deploycheck?sslmode=disable",
})

// varName is a variable name in backquotes, as the table's first column writes them.
var varName = regexp.MustCompile("`([A-Z][A-Z0-9_]*)`")

// readmeConfigTable returns the variables of the first table of README.md's "## Configuration"
// section (the binaries' table; the tooling table after it does not count), each mapped to its
// "Read by" cell.
func readmeConfigTable(t *testing.T) map[string]string {
	t.Helper()
	table := map[string]string{}
	for v, cells := range readmeConfigRows(t) {
		table[v] = cells[1]
	}
	return table
}

// readmeConfigRows returns the rows of that table by variable: the row's cells, trimmed. A row
// naming several variables is theirs alike.
func readmeConfigRows(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	vars := map[string][]string{}
	inSection, inTable, tableDone := false, false, false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "## ") {
			inSection = line == "## Configuration"
			continue
		}
		if !inSection || tableDone {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			if inTable {
				tableDone = true
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if !inTable {
			// The header row: | Variable | Read by | Default | Meaning | Secret |
			if len(cells) < 2 || strings.TrimSpace(cells[0]) != "Variable" || strings.TrimSpace(cells[1]) != "Read by" {
				t.Fatalf("README.md: the first table of ## Configuration starts with %q, want a header | Variable | Read by | ...", line)
			}
			inTable = true
			continue
		}
		if len(cells) < 2 || strings.Trim(strings.TrimSpace(cells[0]), "-") == "" {
			continue // the |---|---| separator
		}
		names := varName.FindAllStringSubmatch(cells[0], -1)
		if len(names) == 0 {
			t.Errorf("README.md configuration table: row %q names no `VARIABLE` in its first column", line)
		}
		for _, m := range names {
			if _, dup := vars[m[1]]; dup {
				t.Errorf("README.md configuration table lists %s twice", m[1])
			}
			row := make([]string, len(cells))
			for i, c := range cells {
				row[i] = strings.TrimSpace(c)
			}
			vars[m[1]] = row
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(vars) == 0 {
		t.Fatal("README.md: found no configuration table under ## Configuration")
	}
	return vars
}

func TestReadmeConfigTable(t *testing.T) {
	table := readmeConfigTable(t)

	env := make([]string, 0, len(readmeEnv))
	for _, k := range sortedKeys(readmeEnv) {
		env = append(env, k+"="+readmeEnv[k])
	}
	readBy := map[string][]string{} // variable -> binaries that read it
	for _, binary := range sortedKeys(binaries) {
		for _, v := range checkConfigVars(t, binary, env) {
			readBy[v] = append(readBy[v], binary)
		}
	}

	for _, v := range sortedKeys(readBy) {
		if _, ok := table[v]; !ok {
			t.Errorf("%s reads %s, but README.md's configuration table does not list it", strings.Join(readBy[v], ", "), v)
		}
	}
	for _, v := range sortedKeys(table) {
		if _, ok := readBy[v]; !ok {
			t.Errorf("README.md's configuration table lists %s (read by %q), but no binary's -check-config reads it", v, table[v])
		}
	}
}

// TestReadmeConfigTableParser pins the parser on the rows it must understand, so a change of
// the README's layout fails loudly instead of making TestReadmeConfigTable vacuous.
func TestReadmeConfigTableParser(t *testing.T) {
	table := readmeConfigTable(t)
	for _, v := range []string{"DATABASE_URL", "TM_TOKEN_ADDR", "TM_HEALTH_ADDR", "CF_API_TOKEN"} {
		if _, ok := table[v]; !ok {
			t.Errorf("parsed table lacks %s; parsed %v", v, sortedKeys(table))
		}
	}
	// The tooling table below the binaries' one is not configuration of a binary.
	for _, v := range []string{"TM_TEST_DATABASE_URL", "POSTGRES_PASSWORD"} {
		if slices.Contains(sortedKeys(table), v) {
			t.Errorf("parsed table holds %s, a tooling variable", v)
		}
	}
}
