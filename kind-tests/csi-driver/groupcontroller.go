package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Group snapshots: one snapshot per volume (<group id>-<n>), taken one after the other under
// the store's lock, so no other call of this driver runs in between.

func (d *driver) GroupControllerGetCapabilities(context.Context, *csi.GroupControllerGetCapabilitiesRequest) (*csi.GroupControllerGetCapabilitiesResponse, error) {
	return &csi.GroupControllerGetCapabilitiesResponse{Capabilities: []*csi.GroupControllerServiceCapability{{
		Type: &csi.GroupControllerServiceCapability_Rpc{Rpc: &csi.GroupControllerServiceCapability_RPC{
			Type: csi.GroupControllerServiceCapability_RPC_CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT,
		}},
	}}}, nil
}

func (d *driver) groupProto(id string, g groupMeta) (*csi.VolumeGroupSnapshot, error) {
	out := &csi.VolumeGroupSnapshot{GroupSnapshotId: id, CreationTime: timestamppb.New(g.CreationTime), ReadyToUse: true}
	for _, sid := range g.SnapshotIDs {
		m, err := d.store.snapshot(sid)
		if err != nil {
			return nil, rpcError(err, "member snapshot "+sid)
		}
		out.Snapshots = append(out.Snapshots, snapshotProto(sid, m))
	}
	return out, nil
}

func (d *driver) CreateVolumeGroupSnapshot(_ context.Context, req *csi.CreateVolumeGroupSnapshotRequest) (*csi.CreateVolumeGroupSnapshotResponse, error) {
	id := req.GetName()
	if err := checkID(id); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if len(req.GetSourceVolumeIds()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "source volume ids are required")
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	g, err := d.store.group(id)
	switch {
	case err == nil:
		// a retry: the same volumes must be asked for
		var have []string
		for _, sid := range g.SnapshotIDs {
			m, err := d.store.snapshot(sid)
			if err != nil {
				return nil, rpcError(err, "member snapshot "+sid)
			}
			have = append(have, m.SourceVolumeID)
		}
		want := slices.Clone(req.GetSourceVolumeIds())
		slices.Sort(have)
		slices.Sort(want)
		if !slices.Equal(have, want) {
			return nil, status.Errorf(codes.AlreadyExists, "group snapshot %s exists for other volumes", id)
		}
	case errors.Is(err, errNotFound):
		g = groupMeta{CreationTime: time.Now().UTC()}
		for i, vid := range req.GetSourceVolumeIds() {
			sid := fmt.Sprintf("%s-%d", id, i)
			if _, err := d.createSnapshotLocked(sid, vid, id); err != nil {
				for _, done := range g.SnapshotIDs {
					_ = d.store.deleteSnapshot(done)
				}
				return nil, err
			}
			g.SnapshotIDs = append(g.SnapshotIDs, sid)
		}
		if err := writeJSON(d.store.groupFile(id), g); err != nil {
			return nil, rpcError(err, "group snapshot "+id)
		}
	default:
		return nil, rpcError(err, "group snapshot "+id)
	}
	gs, err := d.groupProto(id, g)
	if err != nil {
		return nil, err
	}
	return &csi.CreateVolumeGroupSnapshotResponse{GroupSnapshot: gs}, nil
}

func (d *driver) DeleteVolumeGroupSnapshot(_ context.Context, req *csi.DeleteVolumeGroupSnapshotRequest) (*csi.DeleteVolumeGroupSnapshotResponse, error) {
	id := req.GetGroupSnapshotId()
	if err := checkID(id); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	members := slices.Clone(req.GetSnapshotIds())
	if g, err := d.store.group(id); err == nil {
		members = append(members, g.SnapshotIDs...)
	}
	for _, sid := range members {
		if checkID(sid) != nil {
			continue
		}
		if err := d.store.deleteSnapshot(sid); err != nil {
			return nil, rpcError(err, "deleting snapshot "+sid)
		}
	}
	if err := removeIfExists(d.store.groupFile(id)); err != nil {
		return nil, rpcError(err, "deleting group snapshot "+id)
	}
	return &csi.DeleteVolumeGroupSnapshotResponse{}, nil
}

func (d *driver) GetVolumeGroupSnapshot(_ context.Context, req *csi.GetVolumeGroupSnapshotRequest) (*csi.GetVolumeGroupSnapshotResponse, error) {
	id := req.GetGroupSnapshotId()
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	g, err := d.store.group(id)
	if err != nil {
		return nil, rpcError(err, "group snapshot "+id)
	}
	gs, err := d.groupProto(id, g)
	if err != nil {
		return nil, err
	}
	return &csi.GetVolumeGroupSnapshotResponse{GroupSnapshot: gs}, nil
}
