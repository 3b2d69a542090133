package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestTokenSources proves the order in which the commands find their
// token: --token, then ZERVERLESS_TOKEN, then admin.token in --data,
// ZERVERLESS_DATA or ./zerverless-data.
func TestTokenSources(t *testing.T) {
	var mu sync.Mutex
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Get("Authorization")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"jobs":[],"next_cursor":""}`))
	}))
	defer srv.Close()

	flagDir, envDir, cwdDir := t.TempDir(), t.TempDir(), t.TempDir()
	for dir, secret := range map[string]string{flagDir: "from-flag-dir", envDir: "from-env-dir"} {
		if err := os.WriteFile(filepath.Join(dir, AdminTokenFile), []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(cwdDir, DefaultDataDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cwdDir, DefaultDataDir, AdminTokenFile), []byte("from-cwd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(cwdDir)

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"flag", map[string]string{TokenEnv: "from-env", DataEnv: envDir}, []string{"--token", "from-flag", "--data", flagDir}, "Bearer from-flag"},
		{"env", map[string]string{TokenEnv: "from-env", DataEnv: envDir}, []string{"--data", flagDir}, "Bearer from-env"},
		{"data flag", map[string]string{DataEnv: envDir}, []string{"--data", flagDir}, "Bearer from-flag-dir"},
		{"data env", map[string]string{DataEnv: envDir}, nil, "Bearer from-env-dir"},
		{"default data dir", nil, nil, "Bearer from-cwd"},
		{"none", map[string]string{DataEnv: t.TempDir()}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"jobs", "--server", srv.URL}, tc.args...)
			if r := run(t, tc.env, args...); r.code != 0 {
				t.Fatalf("jobs: %+v", r)
			}
			mu.Lock()
			defer mu.Unlock()
			if got != tc.want {
				t.Fatalf("Authorization = %q, want %q", got, tc.want)
			}
		})
	}
}
