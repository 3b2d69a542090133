package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

func TestWithTokenSendsBearerOnlyToItsServer(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen["other"] = r.Header.Get("Authorization")
		mu.Unlock()
		w.Write([]byte(`{"status":"ok"}`))
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = r.Header.Get("Authorization")
		mu.Unlock()
		if r.URL.Path == "/health" {
			http.Redirect(w, r, other.URL+"/health", http.StatusFound)
			return
		}
		w.Write([]byte(`{"version":"x"}`))
	}))
	defer srv.Close()

	plain := New(srv.URL, nil)
	c := plain.WithToken("zv_secret")
	if _, err := c.Info(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Info(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["/health"] != "Bearer zv_secret" {
		t.Errorf("server saw Authorization %q, want the bearer token", seen["/health"])
	}
	if seen["other"] != "" {
		t.Errorf("a redirect target saw Authorization %q, want none", seen["other"])
	}
	if seen["/info"] != "" {
		t.Errorf("the client without a token sent Authorization %q", seen["/info"])
	}
}
