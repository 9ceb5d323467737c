//! End-to-end tests of cluster mode: `tests/cluster.rs` brings up a real control plane
//! (etcd and kube-apiserver built from upstream Go modules) and hosts made of network
//! namespaces with `e2e/scripts/cluster.sh`, and drives them with kubectl.
