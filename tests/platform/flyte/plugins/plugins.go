// Package plugins links the FlytePropeller 1.16.8 task plugins whose modules the Go module proxy
// serves, for the two programs of this folder.
//
// It follows flytepropeller/plugins/loader.go at v1.16.8, which imports every plugin for
// `flytepropeller`'s main (cmd/controller/main.go), with one line left out: the Spark plugin
// (flyteplugins/go/tasks/plugins/k8s/spark) needs github.com/kubeflow/spark-operator, which the
// proxy does not serve. Without it, a task of type "spark" has no handler and the
// `plugins.spark` config section is not registered; nothing else changes.
package plugins

import (
	// Each import registers its plugin and its config section with flytestdlib's root section.
	_ "github.com/flyteorg/flyte/flyteplugins/go/tasks/plugins/array/awsbatch"
	_ "github.com/flyteorg/flyte/flyteplugins/go/tasks/plugins/array/k8s"
	_ "github.com/flyteorg/flyte/flyteplugins/go/tasks/plugins/k8s/dask"
	_ "github.com/flyteorg/flyte/flyteplugins/go/tasks/plugins/k8s/kfoperators/mpi"
	_ "github.com/flyteorg/flyte/flyteplugins/go/tasks/plugins/k8s/kfoperators/pytorch"
	_ "github.com/flyteorg/flyte/flyteplugins/go/tasks/plugins/k8s/kfoperators/tensorflow"
	_ "github.com/flyteorg/flyte/flyteplugins/go/tasks/plugins/k8s/pod"
	_ "github.com/flyteorg/flyte/flyteplugins/go/tasks/plugins/k8s/ray"
	_ "github.com/flyteorg/flyte/flyteplugins/go/tasks/plugins/testing"
	_ "github.com/flyteorg/flyte/flyteplugins/go/tasks/plugins/webapi/athena"
	_ "github.com/flyteorg/flyte/flyteplugins/go/tasks/plugins/webapi/bigquery"
	_ "github.com/flyteorg/flyte/flyteplugins/go/tasks/plugins/webapi/databricks"
	_ "github.com/flyteorg/flyte/flyteplugins/go/tasks/plugins/webapi/snowflake"
)
