package sqlite

import (
	"encoding/json"
	"strconv"

	"github.com/zerverless/zerverless/internal/job"
)

// The JSON the writer stores for every job (its result, the result's
// summary, its status lines) is written here without reflection: exactly
// what encoding/json writes (fuzz tests check it byte for byte), for the
// values a job commonly has. A value outside that (a build report, a time
// out of JSON's range) goes through encoding/json instead, which also gives
// its errors.

// appendJSONString appends s as encoding/json quotes it. A string of
// printable ASCII that needs no escape is copied; any other goes through
// encoding/json, which escapes HTML characters, controls and invalid UTF-8.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendJSONBool(b []byte, v bool) []byte {
	if v {
		return append(b, "true"...)
	}
	return append(b, "false"...)
}

// marshalLogEvent is json.Marshal(ev).
func marshalLogEvent(ev *job.LogEvent) ([]byte, error) {
	b := make([]byte, 0, 128+len(ev.Text)+len(ev.Reason))
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, ev.Seq, 10)
	b = append(b, `,"stream":`...)
	b = appendJSONString(b, string(ev.Stream))
	b = append(b, `,"time":"`...)
	b, err := ev.Time.AppendText(b)
	if err != nil {
		// Out of JSON's range: encoding/json says why.
		return json.Marshal(ev)
	}
	b = append(b, '"')
	if ev.Text != "" {
		b = append(b, `,"text":`...)
		b = appendJSONString(b, ev.Text)
	}
	if ev.Status != "" {
		b = append(b, `,"status":`...)
		b = appendJSONString(b, string(ev.Status))
	}
	if ev.Attempt != 0 {
		b = append(b, `,"attempt":`...)
		b = strconv.AppendInt(b, int64(ev.Attempt), 10)
	}
	if ev.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, ev.Reason)
	}
	if ev.Restarted {
		b = append(b, `,"restarted":true`...)
	}
	if ev.Dropped != 0 {
		b = append(b, `,"dropped":`...)
		b = strconv.AppendInt(b, ev.Dropped, 10)
	}
	return append(b, '}'), nil
}

// marshalResultRow is json.Marshal of r with its Result and Files left
// out, as the jobs row keeps them apart.
func marshalResultRow(r *job.Result) ([]byte, error) {
	if r.Build != nil || len(r.Egress) > 0 || len(r.Replicas) > 0 {
		res := *r
		res.Result, res.Files = nil, nil
		return json.Marshal(res)
	}
	b := make([]byte, 0, 160+len(r.Output)+len(r.Stderr)+len(r.Error))
	b = append(b, `{"status":`...)
	b = appendJSONString(b, string(r.Status))
	b = append(b, `,"output":`...)
	b = appendJSONString(b, r.Output)
	b = append(b, `,"stderr":`...)
	b = appendJSONString(b, r.Stderr)
	if r.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, r.Error)
	}
	b = append(b, `,"exit_code":`...)
	b = strconv.AppendInt(b, int64(r.ExitCode), 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendInt(b, r.DurationMS, 10)
	b = append(b, `,"truncated":`...)
	b = appendJSONBool(b, r.Truncated)
	if r.OOMKilled {
		b = append(b, `,"oom_killed":true`...)
	}
	if r.PeakMemoryBytes != 0 {
		b = append(b, `,"peak_memory_bytes":`...)
		b = strconv.AppendInt(b, r.PeakMemoryBytes, 10)
	}
	if r.CPUTimeMS != 0 {
		b = append(b, `,"cpu_time_ms":`...)
		b = strconv.AppendInt(b, r.CPUTimeMS, 10)
	}
	if r.WarmStart {
		b = append(b, `,"warm_start":true`...)
	}
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(r.Attempt), 10)
	if r.WorkerID != "" {
		b = append(b, `,"worker_id":`...)
		b = appendJSONString(b, r.WorkerID)
	}
	return append(b, '}'), nil
}

// marshalResultSummary is json.Marshal(s).
func marshalResultSummary(s *job.ResultSummary) []byte {
	b := make([]byte, 0, 192+len(s.Error))
	b = append(b, '{')
	if s.Error != "" {
		b = append(b, `"error":`...)
		b = appendJSONString(b, s.Error)
		b = append(b, ',')
	}
	b = append(b, `"exit_code":`...)
	b = strconv.AppendInt(b, int64(s.ExitCode), 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendInt(b, s.DurationMS, 10)
	b = append(b, `,"truncated":`...)
	b = appendJSONBool(b, s.Truncated)
	b = append(b, `,"oom_killed":`...)
	b = appendJSONBool(b, s.OOMKilled)
	if s.PeakMemoryBytes != 0 {
		b = append(b, `,"peak_memory_bytes":`...)
		b = strconv.AppendInt(b, s.PeakMemoryBytes, 10)
	}
	if s.CPUTimeMS != 0 {
		b = append(b, `,"cpu_time_ms":`...)
		b = strconv.AppendInt(b, s.CPUTimeMS, 10)
	}
	b = append(b, `,"output_bytes":`...)
	b = strconv.AppendInt(b, s.OutputBytes, 10)
	b = append(b, `,"stderr_bytes":`...)
	b = strconv.AppendInt(b, s.StderrBytes, 10)
	b = append(b, `,"result_bytes":`...)
	b = strconv.AppendInt(b, s.ResultBytes, 10)
	if s.Files != 0 {
		b = append(b, `,"files":`...)
		b = strconv.AppendInt(b, int64(s.Files), 10)
	}
	if s.FilesBytes != 0 {
		b = append(b, `,"files_bytes":`...)
		b = strconv.AppendInt(b, s.FilesBytes, 10)
	}
	return append(b, '}')
}
