package main

import (
	"strings"
	"testing"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol/protocoltest"
)

// TestDashboardPoolsAndServiceLog signs in to the dashboard in headless
// Chromium and sees the dispatch pools (two lua workers in one pool, a
// docker worker that offers services in another) and the docker worker's
// warm containers; then it opens a service's deployment and sees a line
// its instance writes appear in the live log, after the lines written
// before the page opened.
func TestDashboardPoolsAndServiceLog(t *testing.T) {
	srv := serviceServer(t, nil)
	for _, name := range []string{"lua-one", "lua-two"} {
		startWorker(t, srv.WorkerURL(), name, job.TypeLua)
	}
	caps := serviceCaps(2)
	caps.Docker.Pool = &job.DockerPool{Ready: 3, Hits: 7, Misses: 2, WarmImages: []string{"z:1"}}
	w := protocoltest.RegisterFrom(t, srv.WorkerURL(), "", testWorkerSecret, caps)
	sw := protocoltest.ServeServices(w, srv.URL(), echoService)
	mustDeployService(t, srv, "dash/svc", `{"runtime":"docker","docker_image":"z:1","min_instances":1}`)
	id := sw.NextStart(t, "no instance").ID
	sw.Output(id, job.LogStdout, "written before the page\n", 0)

	browser := startBrowser(t)
	tb := openPage(t, browser, srv.URL()+"/dashboard/#token="+srv.AdminToken(), dashboardTitle)
	waitText(tb, "who", "admin")

	t.Run("pools", func(t *testing.T) {
		tb := tb.on(t)
		tb.goTo("#/workers")
		waitText(tb, "pools", "lua")
		waitText(tb, "pools", "2 service instances")
		waitText(tb, "workers", "ready 3 · hits 7 · misses 2")
		rows := eval[[]string](tb, `Array.prototype.map.call(document.querySelectorAll("#pools tbody tr"), function (r) { return r.textContent; })`)
		if len(rows) != 2 || !strings.Contains(rows[0], "lua") || !strings.Contains(rows[1], "docker") {
			t.Fatalf("pool rows %q: want the lua pool of two, then the docker pool", rows)
		}
		if n := eval[string](tb, `document.querySelector("#pools tbody tr .pool-workers").textContent`); n != "2" {
			t.Errorf("the lua pool has %q workers, want 2", n)
		}
		screenshot(t, tb, "pools")
	})

	t.Run("a service's live log", func(t *testing.T) {
		tb := tb.on(t)
		tb.goTo("#/deployment/dash/svc")
		waitText(tb, "deployment-name", "dash/svc")
		waitText(tb, "service-instances", id[:12])
		waitText(tb, "service-log", "["+id[:8]+"] written before the page")
		waitText(tb, "service-log-note", "following")
		if strings.Contains(tb.text("service-log"), "written live") {
			t.Fatal("the log shows what was not written yet")
		}
		sw.Output(id, job.LogStderr, "written live\n", 0)
		waitText(tb, "service-log", "["+id[:8]+"] written live")
		if n := eval[int](tb, `document.querySelectorAll("#service-log .stderr").length`); n != 1 {
			t.Errorf("%d stderr lines in the log, want 1", n)
		}
		screenshot(t, tb, "service-log")
	})
}
