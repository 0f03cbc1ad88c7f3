package main

import (
	"errors"
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/rs/zerolog"
)

// configFile is the --config flag of the server commands (node, location): a TOML file
// whose keys are the command's flag names (write-timeout = "2s", controllers = ["a:1",
// "b:2"]). A flag takes its value from the command line first, then from its SIBYL_
// variable, then from the file, then its default. After parsing it also records where
// each flag's value came from, for the effective configuration logged at start.
type configFile struct {
	path   string
	source map[string]string // flag name -> "flag", "env", "file" or "default"
}

func (c *configFile) String() string     { return c.path }
func (c *configFile) Set(v string) error { c.path = v; return nil }

// addConfigFlag registers --config on fs.
func addConfigFlag(fs *flag.FlagSet) *configFile {
	c := &configFile{}
	fs.Var(c, "config", "TOML file of settings named like these flags; a flag or SIBYL_ variable overrides it")
	return c
}

// configOf returns fs's --config, or nil when the command has none.
func configOf(fs *flag.FlagSet) *configFile {
	if f := fs.Lookup("config"); f != nil {
		if c, ok := f.Value.(*configFile); ok {
			return c
		}
	}
	return nil
}

// configError is a bad config file; like envError, the caller prints it.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// apply sets every flag in set that is not yet set from the file, and records sources.
// set holds the flags given on the command line or by the environment, by source.
func (c *configFile) apply(fs *flag.FlagSet, set map[string]string) error {
	c.source = map[string]string{}
	for name, src := range set {
		c.source[name] = src
	}
	if c.path != "" {
		var settings map[string]any
		if _, err := toml.DecodeFile(c.path, &settings); err != nil {
			return &configError{fmt.Errorf("config %s: %w", c.path, err)}
		}
		keys := make([]string, 0, len(settings))
		for k := range settings {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var errs []error
		for _, key := range keys {
			name := strings.ReplaceAll(key, "_", "-")
			f := fs.Lookup(name)
			switch {
			case f == nil || name == "config":
				errs = append(errs, fmt.Errorf("config %s: %q is not a setting of sibyl %s", c.path, key, fs.Name()))
				continue
			case set[name] != "":
				continue // the command line or the environment wins
			}
			v, err := configValue(settings[key])
			if err == nil {
				err = fs.Set(name, v)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("config %s: %s: %w", c.path, key, err))
				continue
			}
			c.source[name] = "file"
		}
		if len(errs) > 0 {
			return &configError{errors.Join(errs...)}
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if c.source[f.Name] == "" {
			c.source[f.Name] = "default"
		}
	})
	return nil
}

// configValue turns a TOML value into the string its flag parses: lists become the
// comma-separated form list flags take.
func configValue(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			s, err := configValue(e)
			if err != nil {
				return "", err
			}
			if strings.Contains(s, ",") {
				return "", fmt.Errorf("list element %q contains a comma", s)
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("a %T cannot set a flag (use a string, number, boolean or list)", v)
}

// secretFlags are never logged.
var secretFlags = map[string]bool{"cluster-secret": true, "token": true, "admin-token": true}

// logEffective logs the configuration a server runs with: every flag's value and where it
// came from, secrets masked.
func logEffective(log zerolog.Logger, fs *flag.FlagSet) {
	c := configOf(fs)
	d := zerolog.Dict()
	fs.VisitAll(func(f *flag.Flag) {
		v := f.Value.String()
		if secretFlags[f.Name] && v != "" {
			v = "(set)"
		}
		src := "default"
		if c != nil && c.source[f.Name] != "" {
			src = c.source[f.Name]
		}
		d = d.Str(f.Name, v+" ("+src+")")
	})
	log.Info().Dict("config", d).Msg("effective configuration")
}
