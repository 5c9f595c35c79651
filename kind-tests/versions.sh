# shellcheck shell=bash disable=SC2034
# Pinned versions for the local cluster (sourced by build.sh, cluster.sh and images.sh).
# Kubernetes 1.34 is the newest release whose kubelet runs on a cgroup v1 host without extra
# settings and that still supports Debian 12's containerd 1.6 (1.35 needs failCgroupV1: false,
# 1.36+ need containerd 2.x).
K8S_VERSION="${HORT_K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${HORT_ETCD_VERSION:-v3.6.16}"
COREDNS_VERSION="${HORT_COREDNS_VERSION:-v1.14.7}"
HELM_VERSION="${HORT_HELM_VERSION:-v3.19.0}"
LOCAL_PATH_VERSION="${HORT_LOCAL_PATH_VERSION:-v0.0.30}"
S3S_FS_VERSION="${HORT_S3S_FS_VERSION:-0.14.1}"
# CSI snapshot machinery (snapshot CRDs, snapshot-controller, csi-snapshotter, csi-provisioner)
SNAPSHOTTER_VERSION="${HORT_SNAPSHOTTER_VERSION:-v8.7.0}"
PROVISIONER_VERSION="${HORT_PROVISIONER_VERSION:-v5.3.0}"
