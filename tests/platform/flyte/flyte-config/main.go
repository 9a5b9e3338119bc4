// flyte-config prints, as JSON, the configuration a Flyte 1.16.8 component reads from its config
// files, loaded by flytestdlib's config loader (config/viper) the way every Flyte binary loads it.
//
//	flyte-config --config '/etc/flyte/config/*.yaml' [--strict]
//
// --config takes what the chart's Deployments pass to the component's own --config flag: one
// search path, a glob, resolved by flytestdlib's files.FindConfigFiles (which falls back to
// ./config.yaml and /etc/flyte/config/config.yaml when nothing matches, as the binaries do).
// The Flyte binaries load it with StrictMode false (flytepropeller/cmd/controller/cmd/root.go,
// flyteadmin/cmd/entrypoints/root.go initConfig); --strict loads it as `<binary> config validate
// --strict` does, and exits 1 on a key no registered section accepts.
//
// Output:
//
//	files         the files loaded, in the order the loader merges them
//	settings      the merged view every config section is decoded from: viper's merge of the
//	              files, map keys lower-cased by viper, list items restored to the case of the
//	              files by flytestdlib (restoreCaseSensitiveArrayKeys). Captured by registering
//	              one section per top-level key with flytestdlib itself, not recomputed here.
//	sections      every section registered by flytepropeller 1.16.8's packages (its cobra
//	              command, the plugins of ../plugins, flytestdlib's storage, logger, ...), as
//	              those Go structs decode the files: defaults, then the files' values.
//	unregistered  top-level keys no section of `sections` receives (flyteadmin's, datacatalog's:
//	              their modules are not served; read them in `settings`, which is what their
//	              structs are decoded from, map keys included).
//	errors        what the loader reported (strict-mode keys, decoding errors).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	// The same sections as the flytepropeller binary of this folder registers.
	_ "github.com/flyteorg/flyte/flytepropeller/cmd/controller/cmd"
	"github.com/flyteorg/flyte/flytestdlib/config"
	"github.com/flyteorg/flyte/flytestdlib/config/files"
	"github.com/flyteorg/flyte/flytestdlib/config/viper"

	_ "homelab-flyte-platform-build/plugins"
	"homelab-flyte-platform-build/release"
)

type output struct {
	Files        []string               `json:"files"`
	Settings     map[string]interface{} `json:"settings"`
	Sections     map[string]interface{} `json:"sections"`
	Unregistered []string               `json:"unregistered"`
	Errors       []string               `json:"errors"`
}

// topLevelKeys are the first-level keys of the files, lower-cased as viper keys are, each with a
// value of the kind the files give it (a mapping, a list, or a scalar).
func topLevelKeys(paths []string) (map[string]interface{}, error) {
	seen := map[string]interface{}{}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var doc map[string]interface{}
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for key, value := range doc {
			seen[strings.ToLower(key)] = value
		}
	}
	return seen, nil
}

// holder is a section config that receives a top-level value of that kind unchanged (the section
// of a list, such as flyteadmin's `domains`, is a pointer to a slice).
func holder(value interface{}) interface{} {
	switch value.(type) {
	case map[string]interface{}:
		return &map[string]interface{}{}
	case []interface{}:
		return &[]interface{}{}
	default:
		scalar := value
		return &scalar
	}
}

// mergedSettings loads the files with a root section of catch-all sections, one per top-level
// key: flytestdlib hands each the subtree it would hand a component's section.
func mergedSettings(ctx context.Context, searchPath string, keys map[string]interface{}) (map[string]interface{}, error) {
	root := config.NewRootSection()
	for key, value := range keys {
		root.MustRegisterSection(key, holder(value))
	}
	accessor := viper.NewAccessor(config.Options{SearchPaths: []string{searchPath}, RootSection: root})
	if err := accessor.UpdateConfig(ctx); err != nil {
		return nil, err
	}
	settings := map[string]interface{}{}
	for key := range keys {
		settings[key] = reflect.ValueOf(root.GetSection(key).GetConfig()).Elem().Interface()
	}
	return settings, nil
}

func main() {
	release.HandleVersionFlag("flyte-config")
	flags := pflag.NewFlagSet("flyte-config", pflag.ExitOnError)
	searchPath := flags.String("config", "", "config file search path (a glob), as given to the component's --config")
	strict := flags.Bool("strict", false, "fail on keys no registered section accepts, as `config validate --strict`")
	if err := flags.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	ctx := context.Background()
	out := output{Files: files.FindConfigFiles([]string{*searchPath}), Errors: []string{}, Unregistered: []string{}}
	keys, err := topLevelKeys(out.Files)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if out.Settings, err = mergedSettings(ctx, *searchPath, keys); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	accessor := viper.NewAccessor(config.Options{StrictMode: *strict, SearchPaths: []string{*searchPath}})
	loadErr := accessor.UpdateConfig(ctx)
	if loadErr != nil {
		out.Errors = append(out.Errors, loadErr.Error())
	}
	if out.Sections, err = config.AllConfigsAsMap(config.GetRootSection()); err != nil {
		out.Errors = append(out.Errors, err.Error())
	}
	for key := range keys {
		if config.GetRootSection().GetSection(key) == nil {
			out.Unregistered = append(out.Unregistered, key)
		}
	}
	sort.Strings(out.Unregistered)

	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	if err := encoder.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *strict && loadErr != nil {
		os.Exit(1)
	}
}
