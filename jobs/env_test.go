package jobs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestJobFileVariables: a job file read from disk expands ${NAME} (with
// defaults), and its paths stay relative to it; the same text given as a
// lab's task takes no variables.
func TestJobFileVariables(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "fw"), 0o755)
	os.WriteFile(filepath.Join(dir, "fw", "app-2.bin"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "bench.yaml"), []byte("boards: []\n"), 0o644)
	t.Setenv("FUDBENCH_TEST_FW", "fw")
	t.Setenv("FUDBENCH_TEST_SEQ", "2")
	text := `bench: ${FUDBENCH_TEST_BENCH:-bench.yaml}
baseline:
  build: {version: 1.0.0, seq: 1}
image:
  file: ${FUDBENCH_TEST_FW}/app-${FUDBENCH_TEST_SEQ}.bin
cuts:
  - after_block: ${FUDBENCH_TEST_SEQ}
`
	p := filepath.Join(dir, "job.yaml")
	os.WriteFile(p, []byte(text), 0o644)
	t.Chdir(t.TempDir())
	j, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if j.Bench != filepath.Join(dir, "bench.yaml") || j.Image.File != filepath.Join(dir, "fw", "app-2.bin") {
		t.Errorf("bench %q, image %q", j.Bench, j.Image.File)
	}
	cs, err := j.Cycles(16)
	if err != nil || len(cs) != 1 || cs[0].Desc != "after_block 2" {
		t.Errorf("cycles %v, %v", descs(cs), err)
	}
	if string(j.Text) != text {
		t.Error("the job's text (its hash) is not the file as written")
	}
	if _, err := Parse(p, []byte(text)); err == nil || !strings.Contains(err.Error(), p+":1:8: ${FUDBENCH_TEST_BENCH:-bench.yaml}: environment variables are expanded in a job file read from disk") {
		t.Errorf("text with variables: %v", err)
	}
}
