package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

var mountCap = []*csi.VolumeCapability{{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}}

func newTestDriver(t *testing.T) (*driver, string) {
	root := t.TempDir()
	st, err := openStore(root)
	if err != nil {
		t.Fatal(err)
	}
	return &driver{name: "csi.hort.test", nodeID: "n", store: st}, root
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSnapshotIsPointInTimeCopyAndRestores(t *testing.T) {
	ctx := context.Background()
	d, root := newTestDriver(t)
	if _, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-a", VolumeCapabilities: mountCap}); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(d.store.volumeDir("pvc-a"), "data")
	if err := os.WriteFile(data, []byte("before"), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snapshot-1", SourceVolumeId: "pvc-a"})
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Snapshot.ReadyToUse || snap.Snapshot.SizeBytes != defaultCapacity {
		t.Fatalf("snapshot %v: want ready, size %d", snap.Snapshot, defaultCapacity)
	}
	// writes after the snapshot do not show in it
	if err := os.WriteFile(data, []byte("after"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data+"-new", []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snapshot-1", SourceVolumeId: "pvc-a"})
	if err != nil || !again.Snapshot.CreationTime.AsTime().Equal(snap.Snapshot.CreationTime.AsTime()) {
		t.Fatalf("a retried CreateSnapshot must return the same snapshot: %v, %v", again, err)
	}
	// a volume from the snapshot holds the content of snapshot time, and is independent of it
	src := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "snapshot-1"}}}
	if _, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-b", VolumeCapabilities: mountCap,
		CapacityRange: &csi.CapacityRange{RequiredBytes: defaultCapacity}, VolumeContentSource: src}); err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(d.store.volumeDir("pvc-b"), "data")
	if got := mustRead(t, restored); got != "before" {
		t.Fatalf("restored volume holds %q, want %q", got, "before")
	}
	if _, err := os.Stat(restored + "-new"); !os.IsNotExist(err) {
		t.Fatalf("a file written after the snapshot is in the restored volume (%v)", err)
	}
	if err := os.WriteFile(restored, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(d.store.snapshotDir("snapshot-1"), "data")); got != "before" {
		t.Fatalf("writing the restored volume changed the snapshot: %q", got)
	}
	// deleting everything leaves nothing behind
	for _, v := range []string{"pvc-a", "pvc-b"} {
		if _, err := d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: "snapshot-1"}); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"volumes", "snapshots", "groups"} {
		if left, _ := os.ReadDir(filepath.Join(root, dir)); len(left) != 0 {
			t.Fatalf("%s not empty after deleting everything: %v", dir, left)
		}
	}
}

func TestGroupSnapshotCoversEveryVolume(t *testing.T) {
	ctx := context.Background()
	d, root := newTestDriver(t)
	for _, v := range []string{"pvc-x", "pvc-y"} {
		if _, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: v, VolumeCapabilities: mountCap}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d.store.volumeDir(v), "f"), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := d.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{
		Name: "groupsnapshot-1", SourceVolumeIds: []string{"pvc-x", "pvc-y"}})
	if err != nil {
		t.Fatal(err)
	}
	gs := resp.GroupSnapshot
	if len(gs.Snapshots) != 2 || !gs.ReadyToUse {
		t.Fatalf("group snapshot %v: want 2 ready members", gs)
	}
	var ids []string
	for _, s := range gs.Snapshots {
		if s.GroupSnapshotId != "groupsnapshot-1" {
			t.Fatalf("member %v does not name its group", s)
		}
		if got := mustRead(t, filepath.Join(d.store.snapshotDir(s.SnapshotId), "f")); got != s.SourceVolumeId {
			t.Fatalf("member %s holds %q, want %q", s.SnapshotId, got, s.SourceVolumeId)
		}
		ids = append(ids, s.SnapshotId)
	}
	if _, err := d.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{
		GroupSnapshotId: "groupsnapshot-1", SnapshotIds: ids}); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"snapshots", "groups"} {
		if left, _ := os.ReadDir(filepath.Join(root, dir)); len(left) != 0 {
			t.Fatalf("%s not empty after deleting the group snapshot: %v", dir, left)
		}
	}
}
