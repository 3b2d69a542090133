package docker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// BenchmarkServiceVersusPublished compares an instance reached through
// its relay (DialInstance: the worker's half of a request's path) with
// the same image run with `docker run -d -p 127.0.0.1::8080` and called
// directly, alternating the two: warm requests on one keep-alive
// connection each (p50 of each, the added p50, and the ratio of
// throughputs), and cold starts (start to first answer), a few of each.
//
//	go test -run '^$' -bench ServiceVersusPublished -benchtime 2000x ./internal/runtime/docker
func BenchmarkServiceVersusPublished(b *testing.B) {
	d := serviceRuntime(b, nil)
	ref := goServerImage(b)
	ctx := context.Background()

	published := func() (string, func(), error) {
		out, err := exec.Command("docker", "run", "-d", "-p", "127.0.0.1::8080", "--label", LabelWorkerID+"="+d.cfg.WorkerID, ref).CombinedOutput()
		if err != nil {
			return "", nil, fmt.Errorf("docker run: %v: %s", err, out)
		}
		id := strings.TrimSpace(string(out))
		rm := func() { _ = exec.Command("docker", "rm", "-f", id).Run() }
		out, err = exec.Command("docker", "port", id, "8080/tcp").Output()
		if err != nil {
			rm()
			return "", nil, fmt.Errorf("docker port: %v", err)
		}
		return strings.TrimSpace(strings.Split(string(out), "\n")[0]), rm, nil
	}
	dialDirect := func(addr string) (net.Conn, error) {
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				if err = roundTrip(c); err == nil {
					return c, nil
				}
				c.Close()
			}
			time.Sleep(5 * time.Millisecond)
		}
		return nil, fmt.Errorf("%s did not answer within a minute", addr)
	}

	// Cold starts: to the first answer.
	var coldZ, coldD []time.Duration
	for range 3 {
		start := time.Now()
		inst := testInstance(b, nil)
		r := make(reports, 4)
		if err := d.StartInstance(ctx, inst, r.report); err != nil {
			b.Fatal(err)
		}
		c, _, err := d.DialInstance(ctx, inst.ID)
		if err == nil {
			err = roundTrip(c)
			c.Close()
		}
		if err != nil {
			b.Fatal(err)
		}
		coldZ = append(coldZ, time.Since(start))
		if err := d.StopInstance(ctx, inst.ID, ""); err != nil {
			b.Fatal(err)
		}

		start = time.Now()
		addr, rm, err := published()
		if err != nil {
			b.Fatal(err)
		}
		c, err = dialDirect(addr)
		if err != nil {
			b.Fatal(err)
		}
		coldD = append(coldD, time.Since(start))
		c.Close()
		rm()
	}

	inst := testInstance(b, nil)
	r := make(reports, 4)
	if err := d.StartInstance(ctx, inst, r.report); err != nil {
		b.Fatal(err)
	}
	defer d.StopInstance(ctx, inst.ID, "")
	zc, _, err := d.DialInstance(ctx, inst.ID)
	if err != nil {
		b.Fatal(err)
	}
	defer zc.Close()
	addr, rm, err := published()
	if err != nil {
		b.Fatal(err)
	}
	defer rm()
	dc, err := dialDirect(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer dc.Close()
	zr, dr := bufio.NewReader(zc), bufio.NewReader(dc)
	var zv, dv []time.Duration
	timed := func(c net.Conn, br *bufio.Reader, into *[]time.Duration) {
		start := time.Now()
		if err := roundTripOn(c, br); err != nil {
			b.Fatal(err)
		}
		*into = append(*into, time.Since(start))
	}
	for range 50 { // warm both
		timed(zc, zr, &zv)
		timed(dc, dr, &dv)
	}
	zv, dv = nil, nil
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			timed(zc, zr, &zv)
			timed(dc, dr, &dv)
		} else {
			timed(dc, dr, &dv)
			timed(zc, zr, &zv)
		}
	}
	b.StopTimer()
	zp50, zp95 := percentiles(zv)
	dp50, dp95 := percentiles(dv)
	sum := func(ds []time.Duration) (t time.Duration) {
		for _, d := range ds {
			t += d
		}
		return t
	}
	tput := float64(sum(dv)) / float64(sum(zv)) // relay's requests per second over direct's
	cz, _ := percentiles(coldZ)
	cd, _ := percentiles(coldD)
	b.ReportMetric(float64(zp50.Microseconds()), "relay-p50-us")
	b.ReportMetric(float64(dp50.Microseconds()), "direct-p50-us")
	b.ReportMetric(float64((zp50 - dp50).Microseconds()), "added-p50-us")
	b.ReportMetric(tput, "throughput-ratio")
	b.ReportMetric(ms(cz)/ms(cd), "cold-ratio")
	b.Logf("warm n=%d: relay p50 %v p95 %v | direct (docker run -p) p50 %v p95 %v | added p50 %v | throughput relay/direct %.2f",
		len(zv), zp50, zp95, dp50, dp95, zp50-dp50, tput)
	b.Logf("cold (start to first answer) median of %d: instance %v | docker run -d -p %v | ratio %.2f",
		len(coldZ), cz.Round(time.Millisecond), cd.Round(time.Millisecond), ms(cz)/ms(cd))
}

// roundTrip sends GET / on a new connection c and reads the answer.
func roundTrip(c net.Conn) error { return roundTripOn(c, bufio.NewReader(c)) }

func roundTripOn(c net.Conn, br *bufio.Reader) error {
	if _, err := io.WriteString(c, "GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}
