// flyte-workflow prints, as JSON, the FlyteWorkflow object FlyteAdmin 1.16.8 would create for an
// execution of a one-task workflow: a container task (type python-task, as flytekit registers a
// @task) whose container runs the given image and arguments, without inputs or outputs.
//
//	flyte-workflow --namespace flytesnacks-development --project flytesnacks --domain development \
//	    --name <execution> --image <image> [--arg ...]
//
// It takes FlyteAdmin's path with FlytePropeller's code: compile the task and the workflow
// (flytepropeller/pkg/compiler, as flyteadmin/pkg/workflowengine/impl/compiler.go does), build the
// object (pkg/compiler/transformers/k8s.BuildFlyteWorkflow, as workflow_builder.go does), and set
// what flyteadmin/pkg/workflowengine/impl/prepare_execution.go adds: the execution ID, the accepted
// time, the finalizer, the event version and the raw output prefix. FlyteAdmin itself (not a
// served module) is not involved.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/durationpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flyteorg/flyte/flyteidl/gen/pb-go/flyteidl/admin"
	"github.com/flyteorg/flyte/flyteidl/gen/pb-go/flyteidl/core"
	"github.com/flyteorg/flyte/flytepropeller/pkg/apis/flyteworkflow/v1alpha1"
	"github.com/flyteorg/flyte/flytepropeller/pkg/client/clientset/versioned/scheme"
	"github.com/flyteorg/flyte/flytepropeller/pkg/compiler"
	"github.com/flyteorg/flyte/flytepropeller/pkg/compiler/transformers/k8s"

	"homelab-flyte-platform-build/release"
)

// flytepropeller/pkg/controller/controller.go's Finalizer, which prepare_execution.go adds.
const finalizer = "flyte.org/finalizer"

func fail(err error) {
	fmt.Fprintln(os.Stderr, "flyte-workflow:", err)
	os.Exit(1)
}

func main() {
	release.HandleVersionFlag("flyte-workflow")
	flags := pflag.NewFlagSet("flyte-workflow", pflag.ExitOnError)
	namespace := flags.String("namespace", "", "the project-domain namespace the object is created in")
	project := flags.String("project", "flytesnacks", "the execution's project")
	domain := flags.String("domain", "development", "the execution's domain")
	name := flags.String("name", "", "the execution's name")
	image := flags.String("image", "", "the task's container image")
	args := flags.StringArray("arg", nil, "an argument of the task's container (repeat)")
	rawOutput := flags.String("raw-output-prefix", "", "the execution's raw output data prefix (s3://...)")
	if err := flags.Parse(os.Args[1:]); err != nil || *namespace == "" || *name == "" || *image == "" {
		fail(fmt.Errorf("--namespace, --name and --image are required"))
	}

	id := func(kind core.ResourceType, name string) *core.Identifier {
		return &core.Identifier{ResourceType: kind, Project: *project, Domain: *domain, Name: name, Version: "v1"}
	}
	noIO := &core.TypedInterface{Inputs: &core.VariableMap{}, Outputs: &core.VariableMap{}}
	task := &core.TaskTemplate{
		Id:   id(core.ResourceType_TASK, "homelab.hello"),
		Type: "python-task",
		Metadata: &core.TaskMetadata{
			Runtime: &core.RuntimeMetadata{Type: core.RuntimeMetadata_FLYTE_SDK, Version: "1.16.8", Flavor: "python"},
			Timeout: durationpb.New(10 * time.Minute),
		},
		Interface: noIO,
		Target: &core.TaskTemplate_Container{Container: &core.Container{
			Image: *image, Args: *args,
			Resources: &core.Resources{Requests: []*core.Resources_ResourceEntry{
				{Name: core.Resources_CPU, Value: "100m"}, {Name: core.Resources_MEMORY, Value: "100Mi"}}},
		}},
	}
	compiledTask, err := compiler.CompileTask(task)
	if err != nil {
		fail(err)
	}
	workflow := &core.WorkflowTemplate{
		Id:        id(core.ResourceType_WORKFLOW, "homelab.hello_wf"),
		Interface: noIO,
		Nodes: []*core.Node{{
			Id:       "n0",
			Metadata: &core.NodeMetadata{Name: "hello"},
			Target:   &core.Node_TaskNode{TaskNode: &core.TaskNode{Reference: &core.TaskNode_ReferenceId{ReferenceId: task.GetId()}}},
		}},
	}
	closure, err := compiler.CompileWorkflow(workflow, nil, []*core.CompiledTask{compiledTask}, nil)
	if err != nil {
		fail(err)
	}
	execution := &core.WorkflowExecutionIdentifier{Project: *project, Domain: *domain, Name: *name}
	flyteWorkflow, err := k8s.BuildFlyteWorkflow(closure, &core.LiteralMap{}, execution, *namespace)
	if err != nil {
		fail(err)
	}

	// What prepare_execution.go adds.
	flyteWorkflow.ExecutionID = v1alpha1.WorkflowExecutionIdentifier{WorkflowExecutionIdentifier: execution}
	accepted := metav1.NewTime(time.Now())
	flyteWorkflow.AcceptedAt = &accepted
	flyteWorkflow.Finalizers = append(flyteWorkflow.Finalizers, finalizer)
	flyteWorkflow.WorkflowMeta = &v1alpha1.WorkflowMeta{EventVersion: v1alpha1.EventVersion2}
	if *rawOutput != "" {
		flyteWorkflow.RawOutputDataConfig = v1alpha1.RawOutputDataConfig{
			RawOutputDataConfig: &admin.RawOutputDataConfig{OutputLocationPrefix: *rawOutput}}
	}

	// BuildFlyteWorkflow names the kind "flyteworkflow"; FlyteAdmin's typed client sends the kind its
	// scheme registered (FlyteWorkflow), which the API server requires.
	kinds, _, err := scheme.Scheme.ObjectKinds(flyteWorkflow)
	if err != nil {
		fail(err)
	}
	flyteWorkflow.SetGroupVersionKind(kinds[0])

	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	if err := encoder.Encode(flyteWorkflow); err != nil {
		fail(err)
	}
}
