package js

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/dop251/goja"
)

// env is what a job's script sees besides the standard library, and the
// pieces of it the runtime reads back after the run.
type env struct {
	vm        *goja.Runtime
	stringify goja.Callable
	module    *goja.Object
	exports   *goja.Object
}

// newEnv installs INPUT, console and module in vm and caps the string
// methods that could allocate without bound in one call.
func newEnv(vm *goja.Runtime, input json.RawMessage, stdout, stderr io.Writer, maxString int) (*env, error) {
	jsonObj := vm.Get("JSON").ToObject(vm)
	stringify, ok := goja.AssertFunction(jsonObj.Get("stringify"))
	if !ok {
		return nil, fmt.Errorf("JSON.stringify missing")
	}
	parse, ok := goja.AssertFunction(jsonObj.Get("parse"))
	if !ok {
		return nil, fmt.Errorf("JSON.parse missing")
	}
	e := &env{vm: vm, stringify: stringify}

	in := goja.Undefined()
	if len(input) > 0 {
		v, err := parse(goja.Undefined(), vm.ToValue(string(input)))
		if err != nil {
			return nil, fmt.Errorf("parse input: %w", err)
		}
		in = v
	}
	if err := vm.Set("INPUT", in); err != nil {
		return nil, err
	}

	console := vm.NewObject()
	for name, w := range map[string]io.Writer{
		"log": stdout, "info": stdout, "debug": stdout,
		"warn": stderr, "error": stderr,
	} {
		if err := console.Set(name, e.printer(w)); err != nil {
			return nil, err
		}
	}
	if err := vm.Set("console", console); err != nil {
		return nil, err
	}

	e.module = vm.NewObject()
	e.exports = vm.NewObject()
	if err := e.module.Set("exports", e.exports); err != nil {
		return nil, err
	}
	if err := vm.Set("module", e.module); err != nil {
		return nil, err
	}
	if err := vm.Set("exports", e.exports); err != nil {
		return nil, err
	}
	if err := capStrings(vm, maxString); err != nil {
		return nil, err
	}
	return e, nil
}

// returned picks the job's returned value: module.exports when the script
// replaced or filled it, the completion value otherwise.
func (e *env) returned(completion goja.Value) goja.Value {
	exp := e.module.Get("exports")
	if exp == nil {
		return completion
	}
	if obj, ok := exp.(*goja.Object); ok && obj == e.exports && len(obj.Keys()) == 0 {
		return completion
	}
	return exp
}

// encode encodes v with the original JSON.stringify. It returns nil for a
// value without a JSON form.
func (e *env) encode(v goja.Value) ([]byte, error) {
	s, err := e.stringify(goja.Undefined(), v)
	if err != nil {
		return nil, err
	}
	if goja.IsUndefined(s) {
		return nil, nil
	}
	return []byte(s.String()), nil
}

// printer returns a console method that writes its arguments, joined by
// spaces, as one line to w.
func (e *env) printer(w io.Writer) func(goja.FunctionCall) goja.Value {
	return func(call goja.FunctionCall) goja.Value {
		var b strings.Builder
		for i, arg := range call.Arguments {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(e.format(arg))
		}
		b.WriteByte('\n')
		_, _ = io.WriteString(w, b.String())
		return goja.Undefined()
	}
}

// format renders one console argument.
func (e *env) format(v goja.Value) string {
	obj, ok := v.(*goja.Object)
	if !ok || goja.IsNull(v) {
		return v.String()
	}
	if _, isFunc := goja.AssertFunction(v); isFunc || isError(obj) {
		return v.String()
	}
	b, err := e.encode(v)
	if err != nil || b == nil {
		return v.String()
	}
	return string(b)
}

// describe renders a thrown or rejected value for Error.
func describe(vm *goja.Runtime, v goja.Value) string {
	if obj, ok := v.(*goja.Object); ok && isError(obj) {
		if stack := obj.Get("stack"); stack != nil && !goja.IsUndefined(stack) {
			return stack.String()
		}
	}
	if v == nil {
		return "undefined"
	}
	return v.String()
}

func isError(obj *goja.Object) bool {
	return obj.ClassName() == "Error"
}

// capStrings wraps String.prototype.repeat, padStart and padEnd so that
// they throw a RangeError instead of building a string longer than max.
func capStrings(vm *goja.Runtime, max int) error {
	proto := vm.Get("String").ToObject(vm).Get("prototype").ToObject(vm)
	rangeError := vm.Get("RangeError")
	tooLong := func(name string) goja.Value {
		obj, err := vm.New(rangeError, vm.ToValue(fmt.Sprintf("%s: result longer than %d bytes", name, max)))
		if err != nil {
			return vm.ToValue(err.Error())
		}
		return obj
	}
	for _, name := range []string{"repeat", "padStart", "padEnd"} {
		orig, ok := goja.AssertFunction(proto.Get(name))
		if !ok {
			return fmt.Errorf("String.prototype.%s missing", name)
		}
		wrapped := func(call goja.FunctionCall) goja.Value {
			n := call.Argument(0).ToFloat()
			size := n
			if name == "repeat" {
				size = n * float64(len(call.This.String()))
			}
			if size > float64(max) {
				panic(tooLong("String.prototype." + name))
			}
			v, err := orig(call.This, call.Arguments...)
			if err != nil {
				panic(err)
			}
			return v
		}
		if err := proto.DefineDataProperty(name, vm.ToValue(wrapped), goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE); err != nil {
			return err
		}
	}
	return nil
}
