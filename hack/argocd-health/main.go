// argocd-health runs an Argo CD resource health script the way Argo CD runs a user-defined one, for the tests.
//
// Usage: argocd-health SCRIPT.lua < objects.jsonl  (one Kubernetes object per line; one {"status","message"} out)
//
// What is reproduced, from argo-cd v3.6.2 util/lua/lua.go (runLuaWithResourceActionParameters, ExecuteHealthLua,
// decodeValue, isValidHealthStatusCode) and util/lua/oslib_safe.go:
//   - lua.NewState with SkipOpenLibs (user scripts run with useOpenLibs false), then only the package, base and
//     table libraries and a "safe" os library holding os.time and os.date, also preloaded for require("os");
//   - a one-second context deadline;
//   - an empty global table `actionParams` and the object as the global `obj`, converted the way decodeValue
//     converts an unstructured object (integers arrive as int64, which becomes a Lua number);
//   - the script compiled with LoadString and run with PCall;
//   - the returned table encoded with gopher-json and decoded as {status, message}; an empty table reads as an
//     empty status; a status outside Argo CD's six health codes becomes Unknown with "Lua returned an invalid
//     health status"; nil is "no health"; any other return is an error.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

type healthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

// argo-cd gitops-engine pkg/health: HealthStatusCode values
var validCodes = map[string]bool{
	"Unknown": true, "Progressing": true, "Healthy": true, "Suspended": true, "Degraded": true, "Missing": true,
}

func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	tbl := l.CheckTable(1)
	field := func(key string, v int) int {
		if n, ok := tbl.RawGetString(key).(lua.LNumber); ok {
			return int(n)
		}
		return v
	}
	t := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1), field("hour", 12),
		field("min", 0), field("sec", 0), 0, time.Local)
	l.Push(lua.LNumber(t.Unix()))
	return 1
}

// os.date with the conversions of argo-cd's oslib_safe.go (cDateFlagToGo), "!" for UTC and "*t" for a table.
var cDateFlagToGo = map[byte]string{
	'a': "mon", 'A': "Monday", 'b': "Jan", 'B': "January", 'c': "02 Jan 06 15:04 MST", 'd': "02",
	'F': "2006-01-02", 'H': "15", 'I': "03", 'm': "01", 'M': "04", 'p': "PM", 'P': "pm", 'S': "05",
	'x': "15/04/05", 'X': "15:04:05", 'y': "06", 'Y': "2006", 'z': "-0700", 'Z': "MST",
}

func osDate(l *lua.LState) int {
	t := time.Now()
	cfmt := "%c"
	if l.GetTop() >= 1 {
		cfmt = l.CheckString(1)
		if strings.HasPrefix(cfmt, "!") {
			t = time.Now().UTC()
			cfmt = strings.TrimLeft(cfmt, "!")
		}
		if l.GetTop() >= 2 {
			t = time.Unix(l.CheckInt64(2), 0)
		}
		if strings.HasPrefix(cfmt, "*t") {
			ret := l.NewTable()
			for k, v := range map[string]int{"year": t.Year(), "month": int(t.Month()), "day": t.Day(),
				"hour": t.Hour(), "min": t.Minute(), "sec": t.Second(), "wday": int(t.Weekday()) + 1, "yday": 0} {
				ret.RawSetString(k, lua.LNumber(v))
			}
			ret.RawSetString("isdst", lua.LFalse)
			l.Push(ret)
			return 1
		}
	}
	var b strings.Builder
	for i := 0; i < len(cfmt); i++ {
		if cfmt[i] != '%' || i == len(cfmt)-1 {
			b.WriteByte(cfmt[i])
			continue
		}
		i++
		if layout, ok := cDateFlagToGo[cfmt[i]]; ok {
			b.WriteString(t.Format(layout))
		} else if cfmt[i] == 'w' {
			b.WriteString(fmt.Sprint(int(t.Weekday())))
		} else if cfmt[i] == '%' {
			b.WriteByte('%')
		} else {
			b.WriteByte('%')
			b.WriteByte(cfmt[i])
		}
	}
	l.Push(lua.LString(b.String()))
	return 1
}

var osFuncs = map[string]lua.LGFunction{"time": osTime, "date": osDate}

func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.OsLibName, osFuncs))
	return 1
}

func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), osFuncs))
	return 1
}

// decodeValue is argo-cd's: bool, float64, string, json.Number (as a string), int/int32/int64, slices, maps, nil.
func decodeValue(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []interface{}:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]interface{}:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}

// unstructuredNumbers turns json.Number into int64 (integers) or float64, as apimachinery's unstructured decoding does.
func unstructuredNumbers(value interface{}) interface{} {
	switch v := value.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []interface{}:
		for i := range v {
			v[i] = unstructuredNumbers(v[i])
		}
	case map[string]interface{}:
		for k := range v {
			v[k] = unstructuredNumbers(v[k])
		}
	}
	return value
}

func executeHealthLua(obj map[string]interface{}, script string) (*healthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, pair := range []struct {
		n string
		f lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(pair.f), NRet: 0, Protect: true}, lua.LString(pair.n)); err != nil {
			return nil, err
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)
	ctx, cancel := context.WithTimeout(context.Background(), 1*time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", decodeValue(l, obj))
	fn, err := l.LoadString(script)
	if err == nil {
		l.Push(fn)
		err = l.PCall(0, lua.MultRet, nil)
	}
	if err != nil {
		return nil, err
	}
	ret := l.Get(-1)
	if ret.Type() == lua.LTNil {
		return nil, nil
	}
	if ret.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
	}
	raw, err := luajson.Encode(ret)
	if err != nil {
		return nil, err
	}
	hs := &healthStatus{}
	if err := json.Unmarshal(raw, hs); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Value == "array" { // an empty table encodes as []
			return &healthStatus{}, nil
		}
		return nil, err
	}
	if !validCodes[hs.Status] {
		return &healthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return hs, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health SCRIPT.lua < objects.jsonl")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		if strings.TrimSpace(in.Text()) == "" {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(in.Text()))
		dec.UseNumber()
		var obj map[string]interface{}
		if err := dec.Decode(&obj); err != nil {
			fmt.Fprintln(os.Stderr, "bad object:", err)
			os.Exit(2)
		}
		hs, err := executeHealthLua(unstructuredNumbers(obj).(map[string]interface{}), string(script))
		switch {
		case err != nil:
			_ = out.Encode(map[string]string{"error": err.Error()})
		case hs == nil:
			_ = out.Encode(map[string]string{}) // no health from the script: Argo CD falls back to its own checks
		default:
			_ = out.Encode(hs)
		}
	}
}
