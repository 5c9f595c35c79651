#!/bin/sh
# S3 on 0.0.0.0:${S3_LISTEN_PORT:-9000} (not S3_PORT: Kubernetes sets that for a Service named s3), data in ${S3_DATA:-/data}, credentials from the environment
# (defaults are for tests only). Buckets are top-level directories of the data directory;
# S3_BUCKETS (space-separated) creates some at start.
set -eu
: "${S3_ACCESS_KEY:=hort-test-access}"
: "${S3_SECRET_KEY:=hort-test-secret-key}"
: "${S3_DATA:=/data}"
mkdir -p "$S3_DATA"
for b in ${S3_BUCKETS:-}; do mkdir -p "$S3_DATA/$b"; done
exec s3s-fs --host 0.0.0.0 --port "${S3_LISTEN_PORT:-9000}" \
  --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$S3_DATA"
