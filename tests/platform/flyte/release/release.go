// Package release answers --version for the programs of this folder, from what the build put in
// them: flytestdlib's version package (set with -ldflags -X by tests/platform/build, as Flyte's
// own release builds set it) and the module versions the Go linker recorded.
package release

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/flyteorg/flyte/flytestdlib/version"
)

// HandleVersionFlag prints the version and exits when the only argument is --version. It exits 1
// when the version stamped at build time is not the version of the Flyte modules linked in.
func HandleVersionFlag(name string) {
	if len(os.Args) != 2 || os.Args[1] != "--version" {
		return
	}
	linked := map[string]string{}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Replace != nil {
				dep = dep.Replace
			}
			linked[dep.Path] = dep.Version
		}
	}
	fmt.Printf("%s %s (build %s)\n", name, version.Version, version.Build)
	status := 0
	for _, module := range []string{"flytepropeller", "flyteplugins", "flytestdlib", "flyteidl"} {
		path := "github.com/flyteorg/flyte/" + module
		fmt.Printf("  %s %s\n", path, linked[path])
		if linked[path] != version.Version {
			status = 1
		}
	}
	if status != 0 {
		fmt.Fprintf(os.Stderr, "%s: the stamped version %s is not the version of every Flyte module linked in\n",
			name, version.Version)
	}
	os.Exit(status)
}
