//go:build tools

// Package controlplane pins the upstream main packages that build-control-plane.sh builds,
// so `go mod tidy` keeps k8s.io/kubernetes and everything they import in go.mod/go.sum.
package controlplane

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
