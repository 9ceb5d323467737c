//go:build tools

// Package etcd pins etcd's main package (the root of go.etcd.io/etcd/server/v3), which
// build-control-plane.sh builds, so `go mod tidy` keeps it in go.mod/go.sum.
package etcd

import (
	_ "go.etcd.io/etcd/server/v3"
)
