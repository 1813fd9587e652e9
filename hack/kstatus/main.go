// Command kstatus prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status) computes for one resource.
//
// It is the real library that Flux, `kubectl apply --prune`/kpt and cli-utils pollers use to decide whether a
// resource is Current, InProgress, Failed, Terminating or NotFound, wrapped so that tests can ask it about a
// VLMDeployment:
//
//	kubectl get vlmd x -o json | kstatus
//	kstatus -kubeconfig K -namespace ns -group vlmops.io -version v1alpha1 -resource vlmdeployments x
//
// Output: one JSON object {"status": ..., "message": ..., "conditions": [...]}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type output struct {
	Status     string             `json:"status"`
	Message    string             `json:"message"`
	Conditions []status.Condition `json:"conditions"`
}

func fetch(kubeconfig, namespace string, gvr schema.GroupVersionResource, name string) (*unstructured.Unstructured, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", kubeconfig, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	var ri dynamic.ResourceInterface = dyn.Resource(gvr)
	if namespace != "" {
		ri = dyn.Resource(gvr).Namespace(namespace)
	}
	return ri.Get(context.Background(), name, metav1.GetOptions{})
}

func run() error {
	kubeconfig := flag.String("kubeconfig", "", "fetch the resource from this cluster instead of reading JSON on stdin")
	namespace := flag.String("namespace", "", "namespace of the resource (with -kubeconfig)")
	group := flag.String("group", "vlmops.io", "API group (with -kubeconfig)")
	version := flag.String("version", "v1alpha1", "API version (with -kubeconfig)")
	resource := flag.String("resource", "vlmdeployments", "resource plural (with -kubeconfig)")
	flag.Parse()

	var u *unstructured.Unstructured
	if *kubeconfig != "" {
		if flag.NArg() != 1 {
			return fmt.Errorf("with -kubeconfig, give exactly one resource name")
		}
		gvr := schema.GroupVersionResource{Group: *group, Version: *version, Resource: *resource}
		obj, err := fetch(*kubeconfig, *namespace, gvr, flag.Arg(0))
		if apierrors.IsNotFound(err) {
			// what kstatus pollers report for a resource that does not exist
			return json.NewEncoder(os.Stdout).Encode(output{Status: status.NotFoundStatus.String(), Message: err.Error()})
		}
		if err != nil {
			return err
		}
		u = obj
	} else {
		data, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		// apimachinery's decoder keeps integers as int64 (encoding/json would make them float64, which kstatus's
		// accessors for metadata.generation and status.observedGeneration reject), as the API machinery does.
		obj := map[string]interface{}{}
		if err := utiljson.Unmarshal(data, &obj); err != nil {
			return fmt.Errorf("stdin is not a JSON object: %w", err)
		}
		u = &unstructured.Unstructured{Object: obj}
	}

	res, err := status.Compute(u)
	if err != nil {
		return fmt.Errorf("kstatus: %w", err)
	}
	conds := res.Conditions
	if conds == nil {
		conds = []status.Condition{}
	}
	return json.NewEncoder(os.Stdout).Encode(output{Status: res.Status.String(), Message: res.Message, Conditions: conds})
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}
