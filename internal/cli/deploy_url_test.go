package cli

import "testing"

func TestFunctionURL(t *testing.T) {
	for _, tc := range []struct{ base, ref, want string }{
		{"http://localhost:8000", "/demo/hello", "http://localhost:8000/demo/hello"},
		{"http://localhost:8000/", "/demo/hello", "http://localhost:8000/demo/hello"},
		{"https://zv.example.com", "//demo.fn.example.com/hello", "https://demo.fn.example.com/hello"},
		{"http://127.0.0.1:8000", "//demo.fn.test:8000/a/b", "http://demo.fn.test:8000/a/b"},
	} {
		if got := functionURL(tc.base, tc.ref); got != tc.want {
			t.Errorf("functionURL(%q, %q) = %q, want %q", tc.base, tc.ref, got, tc.want)
		}
	}
}
