// flytepropeller, as flytepropeller v1.16.8's cmd/controller/main.go builds it: the same cobra
// command (flytepropeller/cmd/controller/cmd), with the task plugins of ../plugins (every plugin
// of flytepropeller/plugins/loader.go but Spark, whose operator module the proxy does not serve).
// Only --version is added (../release): upstream's binary logs its version at start only.
package main

import (
	"github.com/flyteorg/flyte/flytepropeller/cmd/controller/cmd"

	_ "homelab-flyte-platform-build/plugins"
	"homelab-flyte-platform-build/release"
)

func main() {
	release.HandleVersionFlag("flytepropeller")
	cmd.Execute()
}
