package main

import (
	"errors"
	"flag"
	"reflect"
	"strings"

	"github.com/zerverless/zerverless/internal/job"
)

// SettingsError is a configuration refused before anything starts: every
// setting at fault, each a *job.Error whose Field is its path in the
// command's config ("Orchestrator.HeartbeatInterval") or an error that
// names its flag already.
type SettingsError struct{ Errs []error }

func (e *SettingsError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return "invalid settings: " + strings.Join(msgs, "; ")
}

// settings collects what a component's Validate refused. add flattens
// err's joined and wrapped errors and puts prefix before the Field of each
// *job.Error, so that the field is a path in the command's config.
type settings struct{ errs []error }

func (s *settings) add(prefix string, err error) {
	for _, leaf := range leafErrors(err) {
		var je *job.Error
		if errors.As(leaf, &je) && je.Field != "" {
			c := *je
			c.Field = prefix + je.Field
			leaf = &c
		}
		s.errs = append(s.errs, leaf)
	}
}

// invalid adds the setting at path as refused.
func (s *settings) invalid(path, format string, args ...any) {
	s.errs = append(s.errs, job.Invalid(path, format, args...))
}

func (s *settings) err() error {
	if len(s.errs) == 0 {
		return nil
	}
	return &SettingsError{Errs: s.errs}
}

// leafErrors returns the errors that err joins, unwrapping each until it
// is a *job.Error, a join, or the end of its chain.
func leafErrors(err error) []error {
	if err == nil {
		return nil
	}
	var out []error
	for e := err; e != nil; e = errors.Unwrap(e) {
		if _, ok := e.(*job.Error); ok {
			return []error{e}
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, sub := range j.Unwrap() {
				out = append(out, leafErrors(sub)...)
			}
			return out
		}
	}
	return []error{err}
}

// explainSettings renders each refused setting of err with the flag bound
// to it, when there is one ("--heartbeat: must be a positive duration"),
// else with its path in cfg.
func explainSettings(err *SettingsError, fs *flag.FlagSet, cfg any) []string {
	flags := flagFields(fs, cfg)
	var lines []string
	for _, e := range err.Errs {
		var je *job.Error
		if errors.As(e, &je) && je.Field != "" {
			if name, ok := flags[je.Field]; ok {
				lines = append(lines, "--"+name+": "+je.Message)
				continue
			}
		}
		lines = append(lines, e.Error())
	}
	return lines
}

// flagFields maps the dotted path of every field of *cfg that a flag of fs
// is bound to (the flag package's own Var flags hold a pointer to the
// field) to the flag's name.
func flagFields(fs *flag.FlagSet, cfg any) map[string]string {
	type slot struct {
		addr uintptr
		kind reflect.Kind
	}
	bound := map[slot]string{}
	fs.VisitAll(func(f *flag.Flag) {
		v := reflect.ValueOf(f.Value)
		if v.Kind() == reflect.Pointer && !v.IsNil() {
			bound[slot{v.Pointer(), v.Elem().Kind()}] = f.Name
		}
	})
	out := map[string]string{}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		if name, ok := bound[slot{v.Addr().Pointer(), v.Kind()}]; ok && path != "" {
			out[path] = name
		}
		if v.Kind() != reflect.Struct {
			return
		}
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() {
				walk(v.Field(i), strings.TrimPrefix(path+"."+f.Name, "."))
			}
		}
	}
	walk(reflect.ValueOf(cfg).Elem(), "")
	return out
}
