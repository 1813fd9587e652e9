"""The local control plane: real etcd, kube-apiserver, controller-manager and scheduler on loopback, with kwok
simulating GPU nodes. It is the test bed for every integration test and a way to try the operator without GPUs."""
